//! The flow collector on a real kernel, in throwaway namespaces: a client and a server joined by a veth, the
//! collector listening in the server's. An accepted connection gives a `new` and an `end` flow (with conntrack's
//! counters), a packet logged as the policy table's drop rules log gives a DROPPED flow.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use weft_agent::flows::{Event, Flows, Verdict};
use weft_testkit::{Ns, eventually, root};

#[test]
fn conntrack_events_and_logged_drops_become_flows() {
    if !root() {
        return;
    }
    let (client, server) = (Ns::new("flowc"), Ns::new("flows"));
    client.ok(&[
        "ip",
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &server.name,
    ]);
    for (ns, addr) in [(&client, "10.79.0.1/24"), (&server, "10.79.0.2/24")] {
        ns.ok(&["ip", "addr", "add", addr, "dev", "eth0"]);
        ns.ok(&["ip", "link", "set", "eth0", "up"]);
    }
    // Conntrack in the server's namespace and a drop logged as the policy table logs one.
    server.ok(&["nft", "add table inet t"]);
    server.ok(&[
        "nft",
        "add chain inet t in { type filter hook input priority 0; policy accept; }",
    ]);
    server.ok(&["nft", "add rule inet t in ct state established,related accept"]);
    let log = format!(
        "add rule inet t in tcp dport 81 log prefix \"{}ing-x/y\" group {}",
        weft_policy::plan::DROP_LOG_PREFIX,
        weft_policy::plan::DROP_LOG_GROUP
    );
    server.ok(&["nft", &log]);
    server.ok(&["nft", "add rule inet t in tcp dport 81 drop"]);

    let flows = Flows::new("node-x", 64);
    server
        .netns()
        .run(|| flows.start().map_err(weft_netlink::Error::NotFound))
        .unwrap();
    let listener = server
        .netns()
        .run(|| Ok(TcpListener::bind("10.79.0.2:80")))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let _ = conn.write_all(b"hello");
        }
    });
    client
        .netns()
        .run(|| {
            let mut s = TcpStream::connect("10.79.0.2:80").unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            assert_eq!(got, "hello");
            assert!(TcpStream::connect_timeout(&"10.79.0.2:81".parse().unwrap(), Duration::from_millis(300)).is_err());
            Ok(())
        })
        .unwrap();

    let seen = |event: Event, port: u16| {
        flows
            .after(0)
            .into_iter()
            .find(|f| f.event == event && f.destination.port == port)
    };
    assert!(
        eventually(Duration::from_secs(10), || seen(Event::New, 80).is_some()
            && seen(Event::Drop, 81).is_some()),
        "flows: {:#?}",
        flows.after(0)
    );
    // A closed connection lingers in TIME_WAIT and then until conntrack's garbage collection finds it; deleting
    // it ends it at once.
    server.ok(&["conntrack", "-D", "-p", "tcp", "--dport", "80"]);
    assert!(
        eventually(Duration::from_secs(10), || seen(Event::End, 80).is_some()),
        "flows: {:#?}",
        flows.after(0)
    );
    let new = seen(Event::New, 80).expect("a new flow");
    assert_eq!(new.verdict, Verdict::Forwarded);
    assert_eq!((new.protocol.as_str(), new.node.as_str()), ("TCP", "node-x"));
    assert_eq!(new.source.ip.to_string(), "10.79.0.1");
    let end = seen(Event::End, 80).unwrap();
    let counters = end.counters.expect("conntrack accounting");
    assert!(counters.packets >= 3 && counters.reply_bytes >= 5, "{counters:?}");
    let drop = seen(Event::Drop, 81).unwrap();
    assert_eq!(drop.verdict, Verdict::Dropped);
    let policy = drop.policy.as_ref().expect("the dropping chain");
    assert_eq!(
        (policy.direction.as_str(), policy.rule.as_str()),
        ("Ingress", "default-deny")
    );
}
