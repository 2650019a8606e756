//! What a lab is made of: its name, nodes, overlay and address plan. Written to the state dir at `lab up` so
//! every later command (and a cleanup after a crash) knows the lab's shape.

use crate::error::{Error, Result, io};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub const DEFAULT_LAB: &str = "weft";
/// The lab's wire: nodes at .11, .12, ..., the external host at .100.
const WIRE: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 0);
const EXTERNAL_HOST: u8 = 100;
/// The control plane's address on the wire (the API server's, for nodes and pods).
const CONTROL_PLANE: u8 = 2;
pub const MAX_NODES: u8 = 16;
/// Underlay subnets a lab can put its nodes on (`lab up --subnets`), joined by a router.
pub const MAX_SUBNETS: u8 = 4;
/// Kubernetes' default service CIDR (kubeadm's `--service-cidr`).
pub const DEFAULT_SERVICE_CIDR: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 96, 0, 0), 12);
/// Where LoadBalancer Services get their addresses: next to the wire, reached from the external host by a
/// route per address (the lab's "cloud").
pub const DEFAULT_LB_POOL: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(172, 18, 1, 0), 24);

pub use weft_agent::overlay::Mode as Overlay;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabSpec {
    pub name: String,
    pub nodes: u8,
    pub overlay: Overlay,
    pub cluster_cidr: Ipv4Net,
    /// ClusterIPs of Services (absent in labs made before Services: the default).
    #[serde(default = "default_service_cidr")]
    pub service_cidr: Ipv4Net,
    /// LoadBalancer addresses.
    #[serde(default = "default_lb_pool")]
    pub lb_pool: Ipv4Net,
    /// Where weft-cni (and links named after each plugin type) are found.
    pub cni_bin: PathBuf,
    /// The `weft` binary that runs agents and `weft serve`.
    pub weft_bin: PathBuf,
    /// Built without networking components (`lab up --bare`): `lab up` does not apply deploy/weft.yaml; the
    /// nodes are NotReady until a CNI config appears in their /etc/cni/net.d, as on a kubeadm cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare: bool,
    /// Underlay subnets the nodes are spread over (`lab up --subnets`): the wire's, then 172.18.2.0/24,
    /// 172.18.3.0/24, ..., each a switch of its own, joined by a router namespace (absent in older labs: one).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub subnets: u8,
}

fn one() -> u8 {
    1
}

fn is_one(n: &u8) -> bool {
    *n == 1
}

fn default_service_cidr() -> Ipv4Net {
    DEFAULT_SERVICE_CIDR
}

fn default_lb_pool() -> Ipv4Net {
    DEFAULT_LB_POOL
}

/// One node as the lab lays it out.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    /// Which of the lab's subnets the node is on (0: the wire's).
    pub subnet: u8,
}

impl LabSpec {
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid(msg));
        if self.name.is_empty()
            || self.name.len() > 20
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(format!(
                "lab name {:?}: must be 1 to 20 lower case letters, digits or '-'",
                self.name
            ));
        }
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return bad(format!("--nodes {}: must be between 1 and {MAX_NODES}", self.nodes));
        }
        if self.cluster_cidr.prefix_len() > 24 - 5 {
            return bad(format!(
                "--cluster-cidr {}: too small for {MAX_NODES} nodes with a /24 each (use /19 or larger)",
                self.cluster_cidr
            ));
        }
        if !(1..=MAX_SUBNETS).contains(&self.subnets) || self.subnets > self.nodes {
            return bad(format!(
                "--subnets {}: must be between 1 and {MAX_SUBNETS} and at most --nodes {}",
                self.subnets, self.nodes
            ));
        }
        if let Some(clash) = self.subnet_nets().into_iter().find(|n| overlap(*n, self.lb_pool)) {
            return bad(format!(
                "the subnet {clash} overlaps the load balancer pool {}",
                self.lb_pool
            ));
        }
        if self.service_cidr.prefix_len() > 28 {
            return bad(format!(
                "--service-cidr {}: too small (use /28 or larger)",
                self.service_cidr
            ));
        }
        let wire = Ipv4Net::new_assert(WIRE, 24);
        for (what, net) in [
            ("the cluster CIDR", self.cluster_cidr),
            ("the lab's wire", wire),
            ("the load balancer pool", self.lb_pool),
        ] {
            if net.contains(&self.service_cidr.network()) || self.service_cidr.contains(&net.network()) {
                return bad(format!("--service-cidr {}: overlaps {what} ({net})", self.service_cidr));
            }
        }
        Ok(())
    }

    pub fn node_plans(&self) -> Vec<NodePlan> {
        let mut cidrs = self.cluster_cidr.subnets(24).into_iter().flatten();
        // node-N gets the Nth /24 (10.244.1.0/24 for node-1), so addresses say where a pod runs.
        let _zeroth = cidrs.next();
        // Spread in order: with 3 nodes on 2 subnets, node-1 and node-2 on the wire's, node-3 on the next.
        let nets = self.subnet_nets();
        (1..=self.nodes)
            .zip(cidrs)
            .map(|(i, pod_cidr)| {
                let subnet = ((u16::from(i) - 1) * u16::from(self.subnets) / u16::from(self.nodes)) as u8;
                NodePlan {
                    name: format!("node-{i}"),
                    ip: host(nets[usize::from(subnet)], 10 + i),
                    pod_cidr,
                    subnet,
                }
            })
            .collect()
    }

    /// The lab's underlay subnets: the wire's 172.18.0.0/24, then 172.18.2.0/24 onwards (172.18.1.0/24 is the
    /// load balancer pool's).
    pub fn subnet_nets(&self) -> Vec<Ipv4Net> {
        let [a, b, _, _] = WIRE.octets();
        (0..self.subnets)
            .map(|k| Ipv4Net::new_assert(Ipv4Addr::new(a, b, if k == 0 { 0 } else { k + 1 }, 0), 24))
            .collect()
    }

    /// The router's address on subnet `k` (`.1`), with more than one subnet.
    pub fn router_ip(&self, k: u8) -> Ipv4Addr {
        host(self.subnet_nets()[usize::from(k)], 1)
    }

    pub fn control_plane_ip(&self) -> Ipv4Addr {
        wire_host(CONTROL_PLANE)
    }

    /// The `kubernetes` Service's ClusterIP: the service CIDR's first address, as in every cluster.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_cidr.hosts().next().unwrap_or(self.control_plane_ip())
    }

    pub fn external_ip(&self) -> Ipv4Addr {
        wire_host(EXTERNAL_HOST)
    }

    /// Where pods are told cluster DNS is: the 10th address of the service CIDR (10.96.0.10), as kubeadm does.
    pub fn cluster_dns(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.network()) + 10)
    }

    pub fn wire_prefix(&self) -> u8 {
        24
    }
}

fn wire_host(n: u8) -> Ipv4Addr {
    host(Ipv4Net::new_assert(WIRE, 24), n)
}

fn host(net: Ipv4Net, n: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + u32::from(n))
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Where a lab's files and namespaces are, by name.
#[derive(Clone, Debug)]
pub struct Paths {
    pub lab: String,
}

impl Paths {
    pub fn new(lab: &str) -> Paths {
        Paths { lab: lab.to_string() }
    }

    pub fn root() -> PathBuf {
        PathBuf::from("/run/weft/labs")
    }

    pub fn dir(&self) -> PathBuf {
        Self::root().join(&self.lab)
    }

    pub fn spec_file(&self) -> PathBuf {
        self.dir().join("lab.json")
    }

    /// The store (redb); `objects.json` beside it is what older supervisors wrote, moved in at the next start.
    pub fn store_file(&self) -> PathBuf {
        self.dir().join("objects.redb")
    }

    /// The lab's CA, API server and admin certificates.
    pub fn pki_dir(&self) -> PathBuf {
        self.dir().join("pki")
    }

    /// A standalone kubeconfig for the lab's admin, written by the supervisor once the API serves.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir().join("kubeconfig")
    }

    /// Where `lab up` merged the lab's context (the user's kubeconfig then), so `lab down` removes it from there
    /// whatever `$KUBECONFIG` says by then.
    pub fn merged_into(&self) -> PathBuf {
        self.dir().join("kubeconfig-merged-into")
    }

    /// The context the lab merges into the user's kubeconfig, as kind names its `kind-NAME`.
    pub fn context(&self) -> String {
        format!("weft-{}", self.lab)
    }

    pub fn supervisor_pid(&self) -> PathBuf {
        self.dir().join("supervisor.pid")
    }

    pub fn supervisor_log(&self) -> PathBuf {
        self.dir().join("supervisor.log")
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir().join("nodes").join(node)
    }

    /// The node's own filesystem: where its /opt/cni/bin, /etc/cni/net.d, /run, /var/lib/cni and every
    /// hostPath of its pods are (see `node_fs`).
    pub fn node_root(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("root")
    }

    /// What container images hold (`images/weft/usr/local/bin/{weft,weft-cni}`, see `kubelet::image`).
    pub fn images_dir(&self) -> PathBuf {
        self.dir().join("images")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.dir().join("pods").join(uid)
    }

    /// Every namespace of this lab starts with this prefix, so cleanup finds them without any state file.
    pub fn netns_prefix(&self) -> String {
        format!("weft-{}-", self.lab)
    }

    pub fn wire_netns(&self) -> String {
        format!("{}wire", self.netns_prefix())
    }

    pub fn external_netns(&self) -> String {
        format!("{}external", self.netns_prefix())
    }

    /// The router between the subnets of a lab with more than one.
    pub fn router_netns(&self) -> String {
        format!("{}router", self.netns_prefix())
    }

    pub fn node_netns(&self, node: &str) -> String {
        format!("{}{node}", self.netns_prefix())
    }

    pub fn pod_netns(&self, uid: &str) -> String {
        format!("{}pod-{}", self.netns_prefix(), &uid[..uid.len().min(12)])
    }

    pub fn read_spec(&self) -> Result<LabSpec> {
        let file = self.spec_file();
        let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Lab {
                lab: self.lab.clone(),
                msg: "no such lab (start one with `weft lab up`)".into(),
            },
            _ => io(format!("reading {}", file.display()))(e),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nodes: u8) -> LabSpec {
        LabSpec {
            name: "t".into(),
            nodes,
            overlay: Overlay::HostGw,
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
            service_cidr: DEFAULT_SERVICE_CIDR,
            lb_pool: DEFAULT_LB_POOL,
            cni_bin: "/x".into(),
            weft_bin: "/y".into(),
            bare: false,
            subnets: 1,
        }
    }

    #[test]
    fn nodes_get_their_own_cidr_and_address() {
        let plans = spec(3).node_plans();
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].name, "node-1");
        assert_eq!(plans[0].pod_cidr.to_string(), "10.244.1.0/24");
        assert_eq!(plans[2].ip.to_string(), "172.18.0.13");
        assert_eq!(spec(16).node_plans().len(), 16);
        assert_eq!(spec(1).cluster_dns().to_string(), "10.96.0.10");
    }

    #[test]
    fn nodes_spread_over_subnets_in_order() {
        let mut s = spec(3);
        s.subnets = 2;
        s.validate().unwrap();
        let plans = s.node_plans();
        let placed: Vec<(String, u8)> = plans.iter().map(|p| (p.ip.to_string(), p.subnet)).collect();
        assert_eq!(
            placed,
            [
                ("172.18.0.11".to_string(), 0),
                ("172.18.0.12".to_string(), 0),
                ("172.18.2.13".to_string(), 1)
            ]
        );
        assert_eq!(s.router_ip(1).to_string(), "172.18.2.1");
        s.subnets = 4;
        assert!(s.validate().unwrap_err().to_string().contains("--subnets 4"));
    }

    #[test]
    fn validation_names_the_bad_value() {
        assert!(spec(0).validate().unwrap_err().to_string().contains("--nodes 0"));
        assert!(spec(17).validate().unwrap_err().to_string().contains("--nodes 17"));
        let mut s = spec(2);
        s.cluster_cidr = "10.0.0.0/24".parse().unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("--cluster-cidr"));
        s = spec(2);
        s.name = "Bad Name".into();
        assert!(s.validate().unwrap_err().to_string().contains("lab name"));
        assert!("geneve".parse::<Overlay>().is_err());
        s = spec(2);
        s.service_cidr = "10.244.128.0/20".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("overlaps the cluster CIDR")
        );
        s.service_cidr = "10.96.0.0/29".parse().unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("too small"));
    }

    #[test]
    fn older_specs_get_the_default_service_networks() {
        let old =
            r#"{"name":"t","nodes":2,"overlay":"host-gw","clusterCidr":"10.244.0.0/16","cniBin":"/x","weftBin":"/y"}"#;
        let spec: LabSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.service_cidr.to_string(), "10.96.0.0/12");
        assert_eq!(spec.lb_pool.to_string(), "172.18.1.0/24");
    }
}
