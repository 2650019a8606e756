//! Black-box tests of the real server on 127.0.0.1 (free ports), with a fixed snapshot, over real sockets.

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use weft_dns::{Config, Server, StaticSource};
use weft_model::{Snapshot, Source, SourceError};

const OBJECTS: &str = include_str!("fixtures/cluster.yaml");

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Some("127.0.0.1:0".parse().unwrap()),
        upstreams: vec![],
        ttl: 5,
        domain: "cluster.local".into(),
        workers: 2,
        tcp_idle: Duration::from_secs(10),
        // As served: workers linger after a partial batch.
        linger: Config::default().linger,
    }
}

fn snapshot(extra: &str) -> Snapshot {
    let mut source = StaticSource::new(weft_model::parse(&format!("{OBJECTS}{extra}"), "test").unwrap());
    Arc::unwrap_or_clone(source.next(0).unwrap())
}

fn started(config: Config, extra: &str) -> Server {
    let server = Server::start(config).unwrap();
    server.install(&snapshot(extra));
    server
}

fn serve() -> Server {
    started(config(), "")
}

fn request(name: &str, ty: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

fn udp_raw(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(packet, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn udp(addr: SocketAddr, name: &str, ty: RecordType, edns: Option<u16>) -> Message {
    let req = request(name, ty, edns);
    let bytes = udp_raw(addr, &req.to_vec().unwrap()).expect("an answer");
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.id, req.metadata.id);
    m
}

fn tcp(stream: &mut TcpStream, name: &str, ty: RecordType) -> Message {
    let req = request(name, ty, None).to_vec().unwrap();
    let mut framed = (req.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&req);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn datas(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_specification_records() {
    let s = serve();
    let a = s.addr;
    let m = udp(a, "dns-version.cluster.local.", RecordType::TXT, None);
    assert_eq!(datas(&m), vec!["1.1.0"]);
    assert!(m.metadata.authoritative);

    let m = udp(a, "web.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["10.96.0.20"]);
    assert_eq!(m.answers[0].ttl, 5);

    let m = udp(a, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV, None);
    assert_eq!(datas(&m), vec!["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(
        m.additionals.iter().map(|r| r.data.to_string()).collect::<Vec<_>>(),
        vec!["10.96.0.20"]
    );

    let m = udp(a, "20.0.96.10.in-addr.arpa.", RecordType::PTR, None);
    assert_eq!(datas(&m), vec!["web.default.svc.cluster.local."]);

    let m = udp(a, "db.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["10.244.1.5", "10.244.2.6"]);
    let m = udp(a, "db-0.db.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["10.244.1.5"]);
    let m = udp(a, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV, None);
    assert_eq!(
        datas(&m),
        vec![
            "0 50 5432 10-244-2-6.db.default.svc.cluster.local.",
            "0 50 5432 db-0.db.default.svc.cluster.local."
        ]
    );
    let m = udp(a, "5.1.244.10.in-addr.arpa.", RecordType::PTR, None);
    assert_eq!(datas(&m), vec!["db-0.db.default.svc.cluster.local."]);
    let m = udp(a, "gone.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // No upstream: the CNAME alone.
    let m = udp(a, "ext.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(datas(&m), vec!["example.org."]);

    let m = udp(a, "10-244-3-4.default.pod.cluster.local.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["10.244.3.4"]);
}

#[test]
fn a_burst_is_answered_in_full_by_lingering_workers() {
    let s = serve();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut sent = std::collections::BTreeSet::new();
    for i in 0..100u16 {
        let mut req = request("web.default.svc.cluster.local.", RecordType::A, None);
        req.metadata.id = i;
        sock.send_to(&req.to_vec().unwrap(), s.addr).unwrap();
        sent.insert(i);
    }
    let mut buf = vec![0u8; 1500];
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < sent.len() {
        let n = sock.recv(&mut buf).expect("every query of the burst answered");
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(datas(&m), vec!["10.96.0.20"]);
        answered.insert(m.metadata.id);
    }
    assert_eq!(answered, sent);
}

#[test]
fn dig_answers() {
    if std::process::Command::new("dig").arg("-v").output().is_err() {
        eprintln!("SKIP: dig is not installed (Debian package dnsutils)");
        return;
    }
    let s = serve();
    let out = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &s.addr.port().to_string(),
            "+short",
            "SRV",
            "_http._tcp.web.default.svc.cluster.local",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0 100 80 web.default.svc.cluster.local."
    );
}

#[test]
fn nxdomain_nodata_and_soa() {
    let s = serve();
    for (name, ty, rcode) in [
        (
            "web.default.svc.cluster.local.",
            RecordType::AAAA,
            ResponseCode::NoError,
        ),
        ("default.svc.cluster.local.", RecordType::A, ResponseCode::NoError),
        ("svc.cluster.local.", RecordType::A, ResponseCode::NoError),
        ("nope.default.svc.cluster.local.", RecordType::A, ResponseCode::NXDomain),
        ("web.nope.svc.cluster.local.", RecordType::A, ResponseCode::NXDomain),
        (
            "10-244-3-4.nope.pod.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
    ] {
        let m = udp(s.addr, name, ty, None);
        assert_eq!(m.metadata.response_code, rcode, "{name} {ty}");
        assert!(m.answers.is_empty(), "{name}");
        assert_eq!(m.authorities.len(), 1, "{name}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(m.authorities[0].name.to_ascii(), "cluster.local.");
    }
}

#[test]
fn the_ttl_is_configurable() {
    let mut c = config();
    c.ttl = 30;
    let s = started(c, "");
    let m = udp(s.addr, "web.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(m.answers[0].ttl, 30);
    let m = udp(s.addr, "nope.default.svc.cluster.local.", RecordType::A, None);
    let RData::SOA(soa) = &m.authorities[0].data else {
        panic!("{m:?}")
    };
    assert_eq!((m.authorities[0].ttl, soa.minimum), (30, 30));
}

#[test]
fn names_are_case_insensitive() {
    let s = serve();
    let m = udp(s.addr, "WEB.Default.SVC.cluster.LOCAL.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["10.96.0.20"]);
    assert_eq!(m.queries[0].name().to_ascii(), "WEB.Default.SVC.cluster.LOCAL.");
}

fn big_service() -> String {
    let mut text = String::from(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: default}\nspec: {clusterIP: None}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: big-1, namespace: default, labels: \
         {kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n",
    );
    for i in 0..60 {
        text.push_str(&format!("- addresses: [10.244.9.{i}]\n"));
    }
    text
}

#[test]
fn truncated_over_udp_complete_over_tcp() {
    let s = started(config(), &big_service());
    let name = "big.default.svc.cluster.local.";
    let m = udp(s.addr, name, RecordType::A, None);
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    let m = udp(s.addr, name, RecordType::A, Some(4096));
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
    let m = udp(s.addr, name, RecordType::A, Some(512));
    assert!(m.metadata.truncation);
    let mut stream = TcpStream::connect(s.addr).unwrap();
    let m = tcp(&mut stream, name, RecordType::A);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
}

#[test]
fn several_queries_on_one_tcp_connection_and_idle_close() {
    let mut c = config();
    c.tcp_idle = Duration::from_millis(300);
    let s = started(c, "");
    let mut stream = TcpStream::connect(s.addr).unwrap();
    for _ in 0..3 {
        assert_eq!(
            datas(&tcp(&mut stream, "web.default.svc.cluster.local.", RecordType::A)),
            vec!["10.96.0.20"]
        );
    }
    assert_eq!(
        datas(&tcp(&mut stream, "dns-version.cluster.local.", RecordType::TXT)),
        vec!["1.1.0"]
    );
    std::thread::sleep(Duration::from_millis(700));
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0, "idle connection closed");
}

/// A source that never delivers.
struct Never;

impl Source for Never {
    fn next(&mut self, _after: u64) -> Result<Arc<Snapshot>, SourceError> {
        loop {
            std::thread::park();
        }
    }
}

#[test]
fn servfail_and_not_ready_before_the_first_snapshot() {
    let server = Arc::new(Server::start(config()).unwrap());
    let follower = server.clone();
    std::thread::spawn(move || follower.follow(&mut Never));
    for name in ["web.default.svc.cluster.local.", "nope.default.svc.cluster.local."] {
        let m = udp(server.addr, name, RecordType::A, None);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
    let http = server.http_addr.unwrap();
    assert!(http_get(http, "/ready").starts_with("HTTP/1.1 503"));
    assert!(http_get(http, "/health").starts_with("HTTP/1.1 200"));
    server.install(&snapshot(""));
    assert!(http_get(http, "/ready").starts_with("HTTP/1.1 200"));
    let m = udp(server.addr, "web.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["10.96.0.20"]);
}

#[test]
fn malformed_packets_do_not_stop_it() {
    let s = serve();
    let good = request("web.default.svc.cluster.local.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut looped = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut response = good.clone();
    response[2] |= 0x80;
    let garbage: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in [
        &b""[..],
        &b"\x00"[..],
        &good[..5],
        &truncated,
        &response,
        &garbage,
        &looped,
    ] {
        sock.send_to(p, s.addr).unwrap();
    }
    // A compression loop is answered FORMERR with its ID.
    looped[0] = 0x55;
    let bytes = udp_raw(s.addr, &looped).unwrap();
    assert_eq!(&bytes[..2], &[0x55, 0x34]);
    assert_eq!(bytes[3] & 0x0f, 1);
    let bytes = udp_raw(s.addr, &truncated).unwrap();
    assert_eq!(bytes[3] & 0x0f, 1);
    // And a good query is still answered, over UDP and TCP (after garbage on the same TCP connection).
    assert_eq!(
        datas(&udp(s.addr, "web.default.svc.cluster.local.", RecordType::A, None)),
        vec!["10.96.0.20"]
    );
    let mut bad = TcpStream::connect(s.addr).unwrap();
    bad.write_all(&[0, 3, 1, 2, 3]).unwrap();
    let mut stream = TcpStream::connect(s.addr).unwrap();
    assert_eq!(
        datas(&tcp(&mut stream, "web.default.svc.cluster.local.", RecordType::A)),
        vec!["10.96.0.20"]
    );
}

/// A fake upstream: answers every A question with 192.0.2.1 (TTL 60) and counts the questions.
fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            let name = q.queries[0].name().clone();
            r.add_answer(Record::from_rdata(name, 60, RData::A(A([192, 0, 2, 1].into()))));
            let _ = sock.send_to(&r.to_vec().unwrap(), from);
        }
    });
    (addr, count)
}

#[test]
fn forwards_outside_the_zone_and_caches() {
    let (upstream, count) = fake_upstream();
    let mut c = config();
    c.upstreams = vec![upstream];
    let s = started(c, "");
    let m = udp(s.addr, "example.org.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["192.0.2.1"]);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let m = udp(s.addr, "EXAMPLE.org.", RecordType::A, None);
    assert_eq!(datas(&m), vec!["192.0.2.1"]);
    assert_eq!(count.load(Ordering::SeqCst), 1, "second answer from the cache");
    // Over TCP too, and the ExternalName chased.
    let mut stream = TcpStream::connect(s.addr).unwrap();
    assert_eq!(
        datas(&tcp(&mut stream, "other.example.", RecordType::A)),
        vec!["192.0.2.1"]
    );
    let m = udp(s.addr, "ext.default.svc.cluster.local.", RecordType::A, None);
    let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, vec![RecordType::CNAME, RecordType::A]);
    // Nothing in the cluster domain is forwarded.
    let before = count.load(Ordering::SeqCst);
    let m = udp(s.addr, "nope.default.svc.cluster.local.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(count.load(Ordering::SeqCst), before);
    let metrics = http_get(s.http_addr.unwrap(), "/metrics");
    // example.org again, and as the target of the ExternalName.
    assert!(metrics.contains("weft_dns_cache_hits_total 2"), "{metrics}");
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn upstream_equal_to_ourselves_is_refused() {
    let port = free_port();
    let mut c = config();
    c.listen = SocketAddr::from(([127, 0, 0, 1], port));
    c.upstreams = vec![c.listen];
    let s = Server::start(c).unwrap();
    s.install(&snapshot(""));
    assert!(s.upstreams().is_empty());
    let m = udp(s.addr, "example.org.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(s.metrics().contains("weft_dns_forward_loops_total 1"));
}

#[test]
fn a_query_coming_back_is_a_loop() {
    // The "upstream" relays every question back to the server itself, as a resolver forwarding to us would.
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let mut c = config();
    c.upstreams = vec![relay_addr];
    let s = started(c, "");
    let server = s.addr;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        loop {
            let Ok((n, from)) = relay.recv_from(&mut buf) else {
                continue;
            };
            back.send_to(&buf[..n], server).unwrap();
            let mut answer = vec![0u8; 4096];
            if let Ok(m) = back.recv(&mut answer) {
                let _ = relay.send_to(&answer[..m], from);
            }
        }
    });
    let m = udp(server, "loop.example.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(s.metrics().contains("weft_dns_forward_loops_total 1"));
    // The looping upstream is not used again; the cluster is still answered.
    let m = udp(server, "again.example.", RecordType::A, None);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        datas(&udp(server, "web.default.svc.cluster.local.", RecordType::A, None)),
        vec!["10.96.0.20"]
    );
}

#[test]
fn metrics_and_health() {
    let s = serve();
    udp(s.addr, "web.default.svc.cluster.local.", RecordType::A, None);
    udp(s.addr, "nope.default.svc.cluster.local.", RecordType::A, None);
    let http = s.http_addr.unwrap();
    // A worker counts a query once its answer is sent, so the scrape may come first: scrape until both are in.
    let counted = |m: &str| m.contains("rcode=\"NOERROR\"} 1") && m.contains("rcode=\"NXDOMAIN\"} 1");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut metrics = http_get(http, "/metrics");
    while !counted(&metrics) && std::time::Instant::now() < deadline {
        std::thread::yield_now();
        metrics = http_get(http, "/metrics");
    }
    assert!(metrics.starts_with("HTTP/1.1 200"));
    assert!(
        metrics.contains("weft_dns_queries_total{type=\"A\",rcode=\"NOERROR\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("weft_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"} 1"));
    assert!(metrics.contains("weft_dns_request_duration_seconds_count 2"));
    assert!(metrics.contains("weft_dns_sync_duration_seconds_count 1"));
    assert!(metrics.contains("weft_dns_snapshot_revision 1"));
    assert!(http_get(http, "/ready").starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/nothing").starts_with("HTTP/1.1 404"));
    // Terminating: no longer ready, still answering.
    s.drain();
    assert!(http_get(http, "/readyz").starts_with("HTTP/1.1 503"));
    assert_eq!(
        datas(&udp(s.addr, "web.default.svc.cluster.local.", RecordType::A, None)),
        vec!["10.96.0.20"]
    );
}

#[test]
fn change_to_answer_is_timed_from_the_change() {
    let s = serve();
    let metric = "weft_dns_change_to_answer_seconds";
    // The first snapshot (from a StaticSource) carries no change times: it changed nothing for the server.
    assert!(s.metrics().contains(&format!("{metric}_count 0")));
    let mut snap = snapshot("");
    snap.revision = 2;
    let now = SystemTime::now();
    snap.changes = vec![now - Duration::from_secs(1), now - Duration::from_millis(10)];
    s.install(&snap);
    let text = s.metrics();
    let value = |line: &str| -> f64 {
        let found = text
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("{line}: {text}"));
        found.trim().parse().unwrap()
    };
    assert_eq!(value(&format!("{metric}_count ")), 2.0);
    assert_eq!(
        value(&format!("{metric}_bucket{{le=\"0.5\"}} ")),
        1.0,
        "the change 10 ms ago"
    );
    assert_eq!(
        value(&format!("{metric}_bucket{{le=\"2\"}} ")),
        2.0,
        "and the one a second ago"
    );
    assert!(value(&format!("{metric}_sum ")) >= 1.01);
}

#[test]
fn a_changed_snapshot_is_answered_at_once() {
    let s = serve();
    let extra = "---\napiVersion: v1\nkind: Service\nmetadata: {name: new, namespace: default}\nspec: {clusterIP: 10.96.0.99, ports: [{port: 80}]}\n";
    let name = "new.default.svc.cluster.local.";
    assert_eq!(
        udp(s.addr, name, RecordType::A, None).metadata.response_code,
        ResponseCode::NXDomain
    );
    let mut snap = snapshot(extra);
    snap.revision = 2;
    s.install(&snap);
    assert_eq!(datas(&udp(s.addr, name, RecordType::A, None)), vec!["10.96.0.99"]);
    let mut snap = snapshot("");
    snap.revision = 3;
    s.install(&snap);
    assert_eq!(
        udp(s.addr, name, RecordType::A, None).metadata.response_code,
        ResponseCode::NXDomain
    );
}
