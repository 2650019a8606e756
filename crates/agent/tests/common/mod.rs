//! Test harness: throwaway network namespaces (deleted even when a test fails), a three-node cluster on one
//! "wire" bridge with a pod per node, and a TCP probe that tells which source address the far end saw.
#![allow(dead_code)] // each test binary uses a different part of the harness

use ipnet::Ipv4Net;
use nix::sched::{CloneFlags, setns};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use weft_agent::overlay::NodeNet;

pub use weft_testkit::{Ns, eventually, root};

pub const PROBE_PORT: u16 = 7777;

/// A TCP server inside a namespace that answers every connection with the peer's address, so a test sees
/// the source address that arrived (proof that nothing translated it). Stopped and joined on drop.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    pub fn start(ns: &Ns) -> Echo {
        let netns = ns.netns();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            // This thread is ours alone, so it may switch namespace for good.
            setns(netns.fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = TcpListener::bind(("0.0.0.0", PROBE_PORT)).expect("bind probe port");
            listener.set_nonblocking(true).expect("nonblocking");
            ready_tx.send(()).expect("ready");
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(peer.ip().to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv().expect("probe server started");
        Echo {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One TCP connection from inside `from` to the probe server at `to`; the source address the server saw, or
/// None when the connection failed.
pub fn probe(from: &Ns, to: Ipv4Addr) -> Option<String> {
    from.netns()
        .run(|| {
            let attempt = || -> std::io::Result<String> {
                let addr = SocketAddr::from((to, PROBE_PORT));
                let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
                conn.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut seen = String::new();
                conn.read_to_string(&mut seen)?;
                Ok(seen)
            };
            Ok(attempt().ok())
        })
        .expect("probe thread")
}

/// A node namespace with its uplink `eth0` on the wire, and one pod routed Calico-style: the pod's /32 on a
/// veth, the pod's default route via a link-local gateway held by the node end.
pub struct Node {
    pub net: NodeNet,
    pub pod_ip: Ipv4Addr,
    pub echo: Option<Echo>,
    pub pod: Ns,
    pub ns: Ns,
}

/// Three nodes (172.31.0.11-13, pod CIDRs 10.250.1-3.0/24) on one bridge in a "wire" namespace.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub wire: Ns,
}

impl Cluster {
    pub fn new() -> Cluster {
        let wire = Ns::new("wire");
        wire.ok(&["ip", "link", "add", "br0", "type", "bridge"]);
        wire.ok(&["ip", "link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        for i in 1..=3u8 {
            let ns = Ns::new(&format!("node{i}"));
            let port = format!("n{i}");
            ns.ok(&[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &wire.name,
            ]);
            wire.ok(&["ip", "link", "set", &port, "master", "br0", "up"]);
            let ip = Ipv4Addr::new(172, 31, 0, 10 + i);
            ns.ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.ok(&["ip", "link", "set", "eth0", "up"]);
            // Forwarding in the node's namespace only; the host's own setting is never touched.
            ns.netns()
                .run(|| weft_netlink::sysctl::set("net/ipv4/ip_forward", "1"))
                .expect("ip_forward");

            let pod = Ns::new(&format!("pod{i}"));
            let pod_ip = Ipv4Addr::new(10, 250, i, 1);
            ns.ok(&[
                "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
            ]);
            ns.ok(&["ip", "addr", "add", "169.254.1.1/32", "dev", "vpod"]);
            ns.ok(&["ip", "link", "set", "vpod", "up"]);
            ns.ok(&["ip", "route", "add", &format!("{pod_ip}/32"), "dev", "vpod"]);
            pod.ok(&["ip", "addr", "add", &format!("{pod_ip}/32"), "dev", "eth0"]);
            pod.ok(&["ip", "link", "set", "eth0", "up"]);
            pod.ok(&["ip", "route", "add", "169.254.1.1", "dev", "eth0"]);
            pod.ok(&["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]);
            let echo = Some(Echo::start(&pod));
            nodes.push(Node {
                net: NodeNet {
                    name: format!("node{i}"),
                    ip,
                    pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 250, i, 0), 24).expect("cidr"),
                },
                pod_ip,
                echo,
                pod,
                ns,
            });
        }
        Cluster { nodes, wire }
    }

    pub fn nets(&self) -> Vec<NodeNet> {
        self.nodes.iter().map(|n| n.net.clone()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop the probe servers first: their threads hold the pods' namespaces open.
        for node in &mut self.nodes {
            node.echo.take();
        }
    }
}
