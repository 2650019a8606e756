//! The overlay against the real kernel: three node namespaces on one wire, a pod on each, synced in host-gw and
//! VXLAN mode. Needs root; every namespace is the test's own.

mod common;

use common::{Cluster, Node, Ns, eventually, probe, root};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use weft_agent::overlay::{
    Desired, Encapsulation, Mode, NodeNet, ROUTE_PROTOCOL, Report, VXLAN_DEVICE, plan, sync, vtep_mac,
};
use weft_netlink::{Route, VxlanConfig};

const UPLINK_MTU: u32 = 1500;

fn desired(node: &Node, peers: &[NodeNet], mode: Mode) -> Desired {
    plan(&node.net, peers, &Encapsulation::uniform(mode), UPLINK_MTU).expect("plan")
}

/// Syncs `node` with `peers` through a fresh netlink socket, as a restarted agent would.
fn sync_node(node: &Node, peers: &[NodeNet], mode: Mode) -> Report {
    let mut handle = node.ns.handle();
    sync(&mut handle, "eth0", &desired(node, peers, mode)).expect("sync")
}

fn sync_all(cluster: &Cluster, mode: Mode) -> usize {
    let nets = cluster.nets();
    cluster.nodes.iter().map(|n| sync_node(n, &nets, mode).changes()).sum()
}

/// Pod `from` reaches pod `to`, and `to` sees `from`'s own address (no NAT on the way).
fn assert_reaches(from: &Node, to: &Node) {
    let mut seen = None;
    let ok = eventually(Duration::from_secs(10), || {
        seen = probe(&from.pod, to.pod_ip);
        seen.is_some()
    });
    assert!(ok, "{} cannot reach {} ({})", from.net.name, to.net.name, to.pod_ip);
    assert_eq!(
        seen,
        Some(from.pod_ip.to_string()),
        "source address seen by {}",
        to.net.name
    );
}

fn assert_mesh(cluster: &Cluster) {
    for from in &cluster.nodes {
        for to in &cluster.nodes {
            if from.net.name != to.net.name {
                assert_reaches(from, to);
            }
        }
    }
}

fn weft_routes(ns: &Ns) -> Vec<Route> {
    let mut routes: Vec<Route> = ns
        .handle()
        .routes()
        .expect("routes")
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL)
        .collect();
    routes.sort_by_key(|r| r.dst);
    routes
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn vxlan_device_and_fdb_entries_round_trip() {
    if !root() {
        return;
    }
    let ns = Ns::new("vx");
    ns.ok(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]);
    ns.ok(&["ip", "addr", "add", "172.31.9.1/24", "dev", "eth0"]);
    let mut h = ns.handle();
    let eth0 = h.link_by_name("eth0").unwrap().unwrap();
    let config = VxlanConfig {
        name: "vx0".into(),
        vni: 42,
        local: Ipv4Addr::new(172, 31, 9, 1),
        underlay: eth0.index,
        port: 8472,
        mac: [0x0e, 0x57, 1, 2, 3, 4],
        mtu: 1450,
    };
    h.add_vxlan(&config).unwrap();
    let found = h.vxlan("vx0").unwrap().expect("vx0 is a vxlan device");
    assert_eq!(found.config, config);
    assert!(!found.learning, "learning must be off");
    assert!(h.add_vxlan(&config).unwrap_err().is_exists());
    assert_eq!(h.vxlan("eth0").unwrap(), None, "a veth is not a vxlan device");
    assert_eq!(h.vxlan("nope").unwrap(), None);

    let mac = [0x0e, 0x57, 172, 31, 9, 2];
    h.set_fdb(found.index, mac, ip("172.31.9.2")).unwrap();
    // Replace semantics: the entry moves, it does not gain a second remote.
    h.set_fdb(found.index, mac, ip("172.31.9.3")).unwrap();
    h.set_fdb(found.index, mac, ip("172.31.9.3")).unwrap();
    let entries = h.fdb_entries(found.index).unwrap();
    assert_eq!(
        entries,
        vec![weft_netlink::FdbEntry {
            mac,
            dst: Some(ip("172.31.9.3")),
            permanent: true,
        }]
    );
    assert!(h.fdb_entries(eth0.index).unwrap().iter().all(|e| e.mac != mac));
    h.delete_fdb(found.index, mac, Some(ip("172.31.9.3"))).unwrap();
    assert!(h.fdb_entries(found.index).unwrap().is_empty());
    assert!(h.delete_fdb(found.index, mac, None).unwrap_err().is_not_found());

    h.set_up(found.index).unwrap();
    h.set_neighbour(found.index, ip("10.250.2.0"), mac).unwrap();
    let neighbours = h.neighbours(found.index).unwrap();
    assert_eq!(
        neighbours,
        vec![weft_netlink::Neighbour {
            ip: ip("10.250.2.0"),
            mac: Some(mac),
            permanent: true,
        }]
    );
    h.delete_neighbour(found.index, ip("10.250.2.0")).unwrap();
    assert!(h.neighbours(found.index).unwrap().iter().all(|n| !n.permanent));
}

#[test]
fn host_gw_routes_pods_between_nodes() {
    if !root() {
        return;
    }
    let cluster = Cluster::new();
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };
    // Someone else's route on node1: weft must never touch it.
    n1.ns.ok(&[
        "ip",
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "172.31.0.1",
        "proto",
        "static",
    ]);

    assert_eq!(sync_all(&cluster, Mode::HostGw), 6, "two routes per node");
    let routes = weft_routes(&n1.ns);
    let eth0 = n1.ns.handle().link_by_name("eth0").unwrap().unwrap().index;
    let got: Vec<_> = routes.iter().map(|r| (r.dst, r.gateway, r.oif)).collect();
    assert_eq!(
        got,
        [
            (net("10.250.2.0/24"), Some(ip("172.31.0.12")), Some(eth0)),
            (net("10.250.3.0/24"), Some(ip("172.31.0.13")), Some(eth0)),
        ]
    );
    assert!(n1.ns.handle().vxlan(VXLAN_DEVICE).unwrap().is_none());
    assert_mesh(&cluster);

    // A second sync, each through a new socket (an agent restart), re-adopts everything and changes nothing.
    assert_eq!(sync_all(&cluster, Mode::HostGw), 0);
    assert_eq!(weft_routes(&n1.ns), routes);

    // node2 leaves node1's view: its route goes, node1's pod can no longer reach it, node3 is unaffected.
    let without_n2 = [n1.net.clone(), n3.net.clone()];
    let report = sync_node(n1, &without_n2, Mode::HostGw);
    assert_eq!((report.routes.removed, report.changes()), (1, 1), "{report}");
    let dsts: Vec<_> = weft_routes(&n1.ns).iter().map(|r| r.dst).collect();
    assert_eq!(dsts, [net("10.250.3.0/24")]);
    assert_eq!(probe(&n1.pod, n2.pod_ip), None, "node2's pod must be unreachable");
    assert_reaches(n1, n3);

    // A peer whose CIDR is held by a route weft does not own is reported, and the route left alone.
    n1.ns.ok(&[
        "ip",
        "route",
        "add",
        "10.250.9.0/24",
        "via",
        "172.31.0.1",
        "proto",
        "static",
    ]);
    let intruder = NodeNet {
        name: "node9".into(),
        ip: Ipv4Addr::new(172, 31, 0, 19),
        pod_cidr: "10.250.9.0/24".parse().unwrap(),
    };
    let mut peers = cluster.nets();
    peers.push(intruder);
    let report = sync_node(n1, &peers, Mode::HostGw);
    assert_eq!((report.routes.added, report.conflicts.len()), (1, 1), "{report}");
    let foreign = n1.ns.ok(&["ip", "route", "show", "10.250.9.0/24"]);
    assert!(
        foreign.contains("via 172.31.0.1") && foreign.contains("proto static"),
        "{foreign}"
    );

    assert_mesh(&cluster);
    let other = n1.ns.ok(&["ip", "route", "show", "10.99.0.0/24"]);
    assert!(
        other.contains("via 172.31.0.1") && other.contains("proto static"),
        "{other}"
    );
}

#[test]
fn vxlan_routes_pods_between_nodes() {
    if !root() {
        return;
    }
    let cluster = Cluster::new();
    let [n1, n2, n3] = &cluster.nodes[..] else {
        unreachable!()
    };

    // Per node: device, its address, and per peer a route, a neighbour and an FDB entry.
    assert_eq!(sync_all(&cluster, Mode::Vxlan), 3 * (2 + 3 * 2));
    let mut h = n1.ns.handle();
    let dev = h.vxlan(VXLAN_DEVICE).unwrap().expect("weft.1");
    assert!(dev.up && !dev.learning);
    assert_eq!(
        (dev.config.vni, dev.config.port, dev.config.mtu),
        (1, 4789, UPLINK_MTU - 50)
    );
    assert_eq!(dev.config.mac, vtep_mac(n1.net.ip));
    let addrs: Vec<_> = h.addresses(dev.index).unwrap().into_iter().map(|(_, a)| a).collect();
    assert!(addrs.contains(&net("10.250.1.0/32")), "{addrs:?}");
    let got: Vec<_> = weft_routes(&n1.ns)
        .iter()
        .map(|r| (r.dst, r.gateway, r.oif, r.onlink))
        .collect();
    assert_eq!(
        got,
        [
            (net("10.250.2.0/24"), Some(ip("10.250.2.0")), Some(dev.index), true),
            (net("10.250.3.0/24"), Some(ip("10.250.3.0")), Some(dev.index), true),
        ]
    );
    assert_mesh(&cluster);

    assert_eq!(sync_all(&cluster, Mode::Vxlan), 0, "a second sync changes nothing");

    // node2 leaves: its route, neighbour and FDB entry go from node1, and so does the traffic.
    let report = sync_node(n1, &[n1.net.clone(), n3.net.clone()], Mode::Vxlan);
    assert_eq!(
        (
            report.routes.removed,
            report.neighbours.removed,
            report.fdb.removed,
            report.changes()
        ),
        (1, 1, 1, 3),
        "{report}"
    );
    let mut h = n1.ns.handle();
    let gone = vtep_mac(n2.net.ip);
    assert!(weft_routes(&n1.ns).iter().all(|r| r.dst != net("10.250.2.0/24")));
    assert!(
        h.neighbours(dev.index)
            .unwrap()
            .iter()
            .all(|n| !(n.permanent && n.ip == ip("10.250.2.0")))
    );
    assert!(h.fdb_entries(dev.index).unwrap().iter().all(|e| e.mac != gone));
    assert_eq!(probe(&n1.pod, n2.pod_ip), None, "node2's pod must be unreachable");
    assert_reaches(n1, n3);

    // It comes back.
    let report = sync_node(n1, &cluster.nets(), Mode::Vxlan);
    assert_eq!(report.changes(), 3, "{report}");
    assert_mesh(&cluster);
}

#[test]
fn switching_modes_cleans_up_the_other_mode() {
    if !root() {
        return;
    }
    let cluster = Cluster::new();
    let n1 = &cluster.nodes[0];

    sync_all(&cluster, Mode::HostGw);
    assert_mesh(&cluster);

    // host-gw -> vxlan: the routes move onto weft.1 in place (replaced, not deleted and re-added).
    let report = sync_node(n1, &cluster.nets(), Mode::Vxlan);
    assert_eq!(
        (report.device.added, report.routes.updated, report.routes.added),
        (1, 2, 0),
        "{report}"
    );
    for node in &cluster.nodes[1..] {
        sync_node(node, &cluster.nets(), Mode::Vxlan);
    }
    let dev = n1.ns.handle().vxlan(VXLAN_DEVICE).unwrap().expect("weft.1");
    assert!(weft_routes(&n1.ns).iter().all(|r| r.oif == Some(dev.index) && r.onlink));
    assert_mesh(&cluster);

    // vxlan -> host-gw: the device and everything on it go; the routes are back on eth0.
    let report = sync_node(n1, &cluster.nets(), Mode::HostGw);
    assert_eq!((report.device.removed, report.routes.updated), (1, 2), "{report}");
    for node in &cluster.nodes[1..] {
        sync_node(node, &cluster.nets(), Mode::HostGw);
    }
    for node in &cluster.nodes {
        let mut h = node.ns.handle();
        assert!(
            h.link_by_name(VXLAN_DEVICE).unwrap().is_none(),
            "{} kept weft.1",
            node.net.name
        );
        let eth0 = h.link_by_name("eth0").unwrap().unwrap().index;
        let routes = weft_routes(&node.ns);
        assert_eq!(routes.len(), 2);
        assert!(routes.iter().all(|r| r.oif == Some(eth0) && !r.onlink));
    }
    assert_mesh(&cluster);
    assert_eq!(sync_all(&cluster, Mode::HostGw), 0);
}

#[test]
fn a_foreign_device_named_like_ours_is_refused() {
    if !root() {
        return;
    }
    let cluster = Cluster::new();
    let n1 = &cluster.nodes[0];
    n1.ns.ok(&[
        "ip",
        "link",
        "add",
        VXLAN_DEVICE,
        "type",
        "veth",
        "peer",
        "name",
        "other",
    ]);
    let mut h = n1.ns.handle();
    let err = sync(&mut h, "eth0", &desired(n1, &cluster.nets(), Mode::Vxlan)).unwrap_err();
    assert!(matches!(err, weft_agent::Error::Foreign { .. }), "{err}");
    assert!(h.link_by_name(VXLAN_DEVICE).unwrap().is_some(), "left alone");
    // One bad peer (its address is not on the uplink's subnet, so the kernel refuses the gateway) does not
    // hold back the others: the sync goes on and reports both what it did and what failed.
    let mut peers = cluster.nets();
    peers.push(NodeNet {
        name: "elsewhere".into(),
        ip: Ipv4Addr::new(192, 0, 2, 7),
        pod_cidr: "10.250.7.0/24".parse().unwrap(),
    });
    match sync(&mut h, "eth0", &desired(n1, &peers, Mode::HostGw)) {
        Err(weft_agent::Error::Incomplete { report, errors }) => {
            assert_eq!((report.routes.added, errors.len()), (2, 1), "{report}: {errors:?}");
        }
        other => panic!("expected an incomplete sync, got {other:?}"),
    }
    // host-gw has no device of its own, so the stranger is still left alone.
    let report = sync(&mut h, "eth0", &desired(n1, &cluster.nets(), Mode::HostGw)).expect("host-gw sync");
    assert_eq!(report.changes(), 0, "{report}");
    assert!(h.link_by_name(VXLAN_DEVICE).unwrap().is_some(), "left alone");
    assert!(matches!(
        sync(&mut h, "nope0", &desired(n1, &cluster.nets(), Mode::HostGw)),
        Err(weft_agent::Error::UplinkMissing(_))
    ));
}
