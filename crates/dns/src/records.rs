//! Snapshot → record table: the Kubernetes DNS-Based Service Discovery specification 1.1.0, answered as CoreDNS's
//! kubernetes plugin answers it (`pods insecure`, reverse zones with fallthrough). Pure: no sockets, no clock.
//!
//! The table is built once per snapshot and never changed; the server swaps whole tables. Names are stored in
//! lowercase without the trailing dot; every ancestor of a name that owns records exists too (an empty
//! non-terminal answers NODATA, not NXDOMAIN), as do `svc.<zone>`, `pod.<zone>` and `<ns>.svc|pod.<zone>` of every
//! namespace.

use crate::index::{self, Index};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use weft_model::Snapshot;

/// The version of the specification this table implements (the `dns-version` TXT record).
pub const SPEC_VERSION: &str = "1.1.0";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the table says about one question.
#[derive(Debug)]
pub enum Lookup {
    /// NOERROR with these answers (and additional records, e.g. the addresses of SRV targets).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists but has no record of the type: NOERROR, no answers, the SOA in authority.
    NoData,
    /// The name does not exist in the zone: NXDOMAIN, the SOA in authority.
    NxDomain,
    /// The name is a CNAME to a name outside the zone: answer the CNAME, then chase `target` upstream.
    External { cname: Box<Record>, target: Name },
    /// Not ours: forward upstream.
    NotOurs,
}

/// One record's data, compact (24 bytes; target names shared between the records of a Service). Records are
/// made into wire records only when answered, owned by the name as the client asked it.
#[derive(Clone, Debug, PartialEq)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv { weight: u16, port: u16, target: Arc<Name> },
    Ptr(Arc<Name>),
    Cname(Arc<Name>),
    Ns(Arc<Name>),
    Txt(Box<str>),
    Soa,
}

impl Data {
    fn record_type(&self) -> RecordType {
        match self {
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::AAAA,
            Data::Srv { .. } => RecordType::SRV,
            Data::Ptr(_) => RecordType::PTR,
            Data::Cname(_) => RecordType::CNAME,
            Data::Ns(_) => RecordType::NS,
            Data::Txt(_) => RecordType::TXT,
            Data::Soa => RecordType::SOA,
        }
    }

    fn is_address(&self) -> bool {
        matches!(self, Data::A(_) | Data::Aaaa(_))
    }
}

#[derive(Default, Debug)]
struct Node {
    records: Vec<Data>,
}

/// What `Table::direct` found.
#[derive(Debug, PartialEq)]
pub enum Direct {
    /// NOERROR, with the addresses passed to `emit`.
    Answered,
    /// The name exists without an address of the type: NOERROR, the SOA in authority.
    NoData,
    /// NXDOMAIN, the SOA in authority.
    NxDomain,
}

/// An immutable record table for one snapshot.
#[derive(Debug)]
pub struct Table {
    /// The cluster domain, lowercase, without the trailing dot (`cluster.local`).
    zone: String,
    ttl: u32,
    revision: u64,
    nodes: HashMap<Box<str>, Node>,
    namespaces: HashSet<Box<str>>,
    soa: Record,
    soa_wire: Box<[u8]>,
    /// The names of the zone packed for `direct`.
    index: Index,
}

fn name(s: &str) -> Name {
    // Names built here come from validated Kubernetes names; a name that does not parse is replaced by the root
    // rather than panicking (it then never matches anything useful).
    Name::from_ascii(format!("{s}.")).unwrap_or_else(|_| Name::root())
}

/// The reverse-lookup name of an address, without the trailing dot (`4.3.2.1.in-addr.arpa`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
                s.push('.');
                s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                s.push('.');
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The label CoreDNS generates for an endpoint without a hostname: its address with dashes.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// A pod label as `pods insecure` reads it: `1-2-3-4` or `fd00--1`.
fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

fn is_reverse(qname: &str) -> bool {
    qname.ends_with(".in-addr.arpa") || qname.ends_with(".ip6.arpa")
}

struct Builder {
    zone: String,
    nodes: HashMap<Box<str>, Node>,
}

impl Builder {
    /// Makes `owner` and its ancestors inside the zone (or the reverse zones) exist.
    fn touch(&mut self, owner: &str) -> &mut Node {
        // Reverse names get no intermediate names: the rest of the reverse zones falls through to upstream.
        let mut rest = if is_reverse(owner) { "" } else { owner };
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.len() < self.zone.len() {
                break;
            }
            if !self.nodes.contains_key(parent) {
                self.nodes.insert(parent.into(), Node::default());
            }
            rest = parent;
        }
        self.nodes.entry(owner.into()).or_default()
    }

    fn add(&mut self, owner: &str, data: Data) {
        let node = self.touch(owner);
        if !node.records.contains(&data) {
            node.records.push(data);
        }
    }

    fn address(&mut self, owner: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add(owner, Data::A(v4)),
            IpAddr::V6(v6) => self.add(owner, Data::Aaaa(v6)),
        }
    }
}

/// `record` in wire format with its names written out in full, so that it can follow any message.
fn uncompressed(record: &Record) -> Box<[u8]> {
    let mut out = Vec::with_capacity(96);
    let mut e = BinEncoder::new(&mut out);
    e.set_canonical_form(true);
    e.set_name_encoding(NameEncoding::UncompressedLowercase);
    // A record built from validated names always encodes; an empty SOA makes `direct`'s callers fall back.
    match record.emit(&mut e) {
        Ok(()) => out.into(),
        Err(_) => Box::default(),
    }
}

fn proto(p: Option<&str>) -> String {
    p.unwrap_or("TCP").to_ascii_lowercase()
}

fn ready(e: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

impl Table {
    /// Builds the table of `snapshot` for the cluster domain `zone` with records of `ttl` seconds.
    pub fn build(snapshot: &Snapshot, zone: &str, ttl: u32) -> Table {
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let mut b = Builder {
            zone: zone.clone(),
            nodes: HashMap::new(),
        };
        let soa = Record::from_rdata(
            name(&zone),
            ttl,
            RData::SOA(SOA::new(
                name(&format!("ns.dns.{zone}")),
                name(&format!("hostmaster.{zone}")),
                snapshot.revision as u32,
                7200,
                1800,
                86400,
                ttl,
            )),
        );
        b.add(&zone, Data::Soa);
        b.add(&zone, Data::Ns(Arc::new(name(&format!("ns.dns.{zone}")))));
        b.add(&format!("dns-version.{zone}"), Data::Txt(SPEC_VERSION.into()));
        b.touch(&format!("svc.{zone}"));
        b.touch(&format!("pod.{zone}"));

        let mut namespaces: HashSet<Box<str>> = snapshot
            .namespaces()
            .filter_map(|n| n.metadata.name.as_deref())
            .map(|n| n.to_ascii_lowercase().into())
            .collect();

        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in snapshot.endpoint_slices() {
            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(svc) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                slices.entry((ns, svc.as_str())).or_default().push(s);
            }
        }

        for svc in snapshot.services() {
            let (Some(svc_name), ns) = (
                svc.metadata.name.as_deref(),
                svc.metadata.namespace.as_deref().unwrap_or("default"),
            ) else {
                continue;
            };
            namespaces.insert(ns.to_ascii_lowercase().into());
            let owner = format!("{svc_name}.{ns}.svc.{zone}").to_ascii_lowercase();
            let empty = Vec::new();
            let svc_slices = slices.get(&(ns, svc_name)).unwrap_or(&empty);
            service(&mut b, svc, &owner, svc_slices);
        }
        for ns in &namespaces {
            b.touch(&format!("{ns}.svc.{zone}"));
            b.touch(&format!("{ns}.pod.{zone}"));
        }
        // The DNS server's own name, when the conventional Service exists.
        let dns_owner = format!("kube-dns.kube-system.svc.{zone}");
        let dns_addrs: Vec<Data> = b
            .nodes
            .get(dns_owner.as_str())
            .map(|n| n.records.iter().filter(|r| r.is_address()).cloned().collect())
            .unwrap_or_default();
        for r in dns_addrs {
            b.add(&format!("ns.dns.{zone}"), r);
        }

        // Most names own one or two records: without this, every Vec keeps room for four (272 bytes each).
        let mut nodes = b.nodes;
        for n in nodes.values_mut() {
            n.records.shrink_to_fit();
        }
        nodes.shrink_to_fit();
        Table {
            zone,
            ttl,
            revision: snapshot.revision,
            index: direct_index(&nodes),
            nodes,
            namespaces,
            soa_wire: uncompressed(&soa),
            soa,
        }
    }

    /// A table for no cluster state at all (used by the fuzzer and tests).
    pub fn empty(zone: &str, ttl: u32) -> Table {
        Table::build(&Snapshot::default(), zone, ttl)
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// How many names own records or exist as intermediate names.
    pub fn names(&self) -> usize {
        self.nodes.len()
    }

    /// The zone's SOA, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Whether `qname` (lowercase, no trailing dot) is in the cluster domain.
    pub fn in_zone(&self, qname: &str) -> bool {
        qname == self.zone
            || (qname.len() > self.zone.len()
                && qname.ends_with(self.zone.as_str())
                && qname.as_bytes()[qname.len() - self.zone.len() - 1] == b'.')
    }

    /// Answers `qname` (lowercase, without the trailing dot) for `qtype`.
    pub fn lookup(&self, qname: &str, qtype: RecordType) -> Lookup {
        self.lookup_as(qname, &name(qname), qtype)
    }

    /// As `lookup`, with the records owned by `owner` (the name as the client spelled it).
    pub fn lookup_as(&self, qname: &str, owner: &Name, qtype: RecordType) -> Lookup {
        if is_reverse(qname) {
            return match self.nodes.get(qname) {
                Some(node) => self.answer(node, owner, qtype, 0),
                None => Lookup::NotOurs,
            };
        }
        if !self.in_zone(qname) {
            return Lookup::NotOurs;
        }
        if let Some(node) = self.nodes.get(qname) {
            return self.answer(node, owner, qtype, 0);
        }
        if let Some(ip) = self.pod_address(qname) {
            let data = match ip {
                IpAddr::V4(v4) => Data::A(v4),
                IpAddr::V6(v6) => Data::Aaaa(v6),
            };
            if qtype != RecordType::ANY && qtype != data.record_type() {
                return Lookup::NoData;
            }
            return Lookup::Answer {
                answers: vec![self.record(owner, &data)],
                additionals: vec![],
            };
        }
        Lookup::NxDomain
    }

    /// The address of `<ip>.<ns>.pod.<zone>` (`qname` in the zone, not a name of the table), as `pods insecure`
    /// answers it.
    fn pod_address(&self, qname: &str) -> Option<IpAddr> {
        let relative = qname.get(..qname.len().checked_sub(self.zone.len() + 1)?)?;
        let mut labels = relative.split('.');
        match (labels.next(), labels.next(), labels.next(), labels.next()) {
            (Some(ip), Some(ns), Some("pod"), None) if self.namespaces.contains(ns) => undashed(ip),
            _ => None,
        }
    }

    /// An A or AAAA question in the zone answered without building records, for answers written straight to
    /// the wire (`crate::direct`): each address is passed to `emit` (4 or 16 bytes). `None` for everything else
    /// (other types, names outside the zone, CNAMEs), which `lookup_as` answers.
    pub fn direct(&self, qname: &str, qtype: RecordType, mut emit: impl FnMut(&[u8])) -> Option<Direct> {
        if !matches!(qtype, RecordType::A | RecordType::AAAA)
            || is_reverse(qname)
            || !self.in_zone(qname)
            || !self.index.complete()
        {
            return None;
        }
        let v4 = qtype == RecordType::A;
        let Some(entry) = self.index.get(qname.as_bytes()) else {
            return Some(match self.pod_address(qname) {
                Some(IpAddr::V4(ip)) if v4 => {
                    emit(&ip.octets());
                    Direct::Answered
                }
                Some(IpAddr::V6(ip)) if !v4 => {
                    emit(&ip.octets());
                    Direct::Answered
                }
                Some(_) => Direct::NoData,
                None => Direct::NxDomain,
            });
        };
        // A CNAME is chased (or forwarded) by `lookup_as`.
        if entry.general {
            return None;
        }
        let (addresses, width) = if v4 { (entry.v4, 4) } else { (entry.v6, 16) };
        addresses.chunks_exact(width).for_each(emit);
        Some(if addresses.is_empty() {
            Direct::NoData
        } else {
            Direct::Answered
        })
    }

    /// The zone's SOA record in wire format (names uncompressed), for the authority section of negative answers
    /// written by `crate::direct`.
    pub fn soa_wire(&self) -> &[u8] {
        &self.soa_wire
    }

    /// The wire record of `data` owned by `owner`.
    fn record(&self, owner: &Name, data: &Data) -> Record {
        let rdata = match data {
            Data::A(ip) => RData::A(A(*ip)),
            Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            Data::Srv { weight, port, target } => RData::SRV(SRV::new(0, *weight, *port, (**target).clone())),
            Data::Ptr(target) => RData::PTR(PTR((**target).clone())),
            Data::Cname(target) => RData::CNAME(CNAME((**target).clone())),
            Data::Ns(target) => RData::NS(NS((**target).clone())),
            Data::Txt(text) => RData::TXT(TXT::new(vec![text.to_string()])),
            Data::Soa => return self.soa.clone(),
        };
        Record::from_rdata(owner.clone(), self.ttl, rdata)
    }

    fn answer(&self, node: &Node, owner: &Name, qtype: RecordType, depth: u8) -> Lookup {
        let answers: Vec<Record> = node
            .records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| self.record(owner, r))
            .collect();
        if answers.is_empty()
            && qtype != RecordType::CNAME
            && let Some(Data::Cname(target)) = node.records.iter().find(|r| r.record_type() == RecordType::CNAME)
        {
            let cname = self.record(owner, &Data::Cname(target.clone()));
            let target_str = target.to_lowercase().to_ascii();
            let target_str = target_str.trim_end_matches('.');
            // Inside the zone: chase here (a bounded number of times); outside: upstream.
            if self.in_zone(target_str) && depth < 8 {
                return match self
                    .nodes
                    .get(target_str)
                    .map(|n| self.answer(n, target, qtype, depth + 1))
                {
                    Some(Lookup::Answer {
                        answers: mut more,
                        additionals,
                    }) => {
                        more.insert(0, cname);
                        Lookup::Answer {
                            answers: more,
                            additionals,
                        }
                    }
                    _ => Lookup::Answer {
                        answers: vec![cname],
                        additionals: vec![],
                    },
                };
            }
            return Lookup::External {
                cname: Box::new(cname),
                target: (**target).clone(),
            };
        }
        if answers.is_empty() {
            return Lookup::NoData;
        }
        let mut additionals = Vec::new();
        for r in &node.records {
            if let Data::Srv { target, .. } = r
                && (qtype == RecordType::SRV || qtype == RecordType::ANY)
            {
                let t = target.to_lowercase().to_ascii();
                if let Some(n) = self.nodes.get(t.trim_end_matches('.')) {
                    for a in n.records.iter().filter(|r| r.is_address()) {
                        let rec = self.record(target, a);
                        if !additionals.contains(&rec) {
                            additionals.push(rec);
                        }
                    }
                }
            }
        }
        Lookup::Answer { answers, additionals }
    }
}

/// The index `Table::direct` answers from: every name in the zone (reverse names are never answered there) with
/// its addresses in record order; a name that owns a CNAME is marked for the general path.
fn direct_index(nodes: &HashMap<Box<str>, Node>) -> Index {
    let mut b = index::Builder::default();
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for (name, node) in nodes.iter().filter(|(name, _)| !is_reverse(name)) {
        v4.clear();
        v6.clear();
        let mut cname = false;
        for r in &node.records {
            match r {
                Data::A(ip) => v4.push(*ip),
                Data::Aaaa(ip) => v6.push(*ip),
                Data::Cname(_) => cname = true,
                _ => {}
            }
        }
        b.add(name, cname, &v4, &v6);
    }
    b.finish()
}

fn service(b: &mut Builder, svc: &Service, owner: &str, slices: &[&EndpointSlice]) {
    let Some(spec) = svc.spec.as_ref() else {
        b.touch(owner);
        return;
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        let Some(ext) = spec.external_name.as_deref().filter(|e| !e.is_empty()) else {
            b.touch(owner);
            return;
        };
        let target = Arc::new(name(ext.trim_end_matches('.')));
        b.add(owner, Data::Cname(target.clone()));
        for p in ports {
            if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
                let srv_owner = format!("_{pname}._{}.{owner}", proto(p.protocol.as_deref())).to_ascii_lowercase();
                b.add(
                    &srv_owner,
                    Data::Srv {
                        weight: 100,
                        port: p.port as u16,
                        target: target.clone(),
                    },
                );
            }
        }
        return;
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if !headless {
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|s| s.parse().ok())
            .collect();
        ips.dedup();
        b.touch(owner);
        let target = Arc::new(name(owner));
        for ip in &ips {
            b.address(owner, *ip);
            b.add(&reverse_name(*ip), Data::Ptr(target.clone()));
        }
        for p in ports {
            let srv = Data::Srv {
                weight: 100,
                port: p.port as u16,
                target: target.clone(),
            };
            if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
                let srv_owner = format!("_{pname}._{}.{owner}", proto(p.protocol.as_deref())).to_ascii_lowercase();
                b.add(&srv_owner, srv.clone());
            }
            b.add(owner, srv);
        }
        return;
    }
    // Headless: the ready endpoints, each under its hostname or its dashed address.
    let mut srvs: BTreeMap<String, Vec<(u16, String)>> = BTreeMap::new();
    let mut any = false;
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        for e in slice.endpoints.iter().filter(|e| ready(e)) {
            for ip in e.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                any = true;
                let label = e
                    .hostname
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_else(|| dashed(ip));
                let ep_owner = format!("{label}.{owner}");
                b.address(owner, ip);
                b.address(&ep_owner, ip);
                b.add(&reverse_name(ip), Data::Ptr(Arc::new(name(&ep_owner))));
                for p in slice.ports.iter().flatten() {
                    let Some(port) = p.port else { continue };
                    let proto = proto(p.protocol.as_deref());
                    if let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) {
                        srvs.entry(format!("_{pname}._{proto}.{owner}").to_ascii_lowercase())
                            .or_default()
                            .push((port as u16, ep_owner.clone()));
                    }
                    srvs.entry(owner.to_string())
                        .or_default()
                        .push((port as u16, ep_owner.clone()));
                }
            }
        }
    }
    if !any {
        // No ready endpoint: the name does not exist (NXDOMAIN), as in CoreDNS.
        return;
    }
    for (srv_owner, mut targets) in srvs {
        targets.sort();
        targets.dedup();
        let weight = (100 / targets.len()).max(1) as u16;
        for (port, target) in targets {
            let target = Arc::new(name(&target));
            b.add(&srv_owner, Data::Srv { weight, port, target });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECTS: &str = include_str!("../tests/fixtures/cluster.yaml");

    fn table() -> Table {
        let snap = Snapshot::new(3, weft_model::parse(OBJECTS, "test").unwrap());
        Table::build(&snap, "cluster.local", 5)
    }

    fn answers(t: &Table, q: &str, ty: RecordType) -> Vec<String> {
        match t.lookup(q, ty) {
            Lookup::Answer { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("{q} {ty}: {other:?}"),
        }
    }

    #[test]
    fn version_and_soa() {
        let t = table();
        assert_eq!(answers(&t, "dns-version.cluster.local", RecordType::TXT), vec!["1.1.0"]);
        assert_eq!(answers(&t, "cluster.local", RecordType::SOA).len(), 1);
    }

    #[test]
    fn cluster_ip_service() {
        let t = table();
        assert_eq!(
            answers(&t, "web.default.svc.cluster.local", RecordType::A),
            vec!["10.96.0.20"]
        );
        assert!(matches!(
            t.lookup("web.default.svc.cluster.local", RecordType::AAAA),
            Lookup::NoData
        ));
        assert_eq!(
            answers(&t, "_http._tcp.web.default.svc.cluster.local", RecordType::SRV),
            vec!["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            answers(&t, "20.0.96.10.in-addr.arpa", RecordType::PTR),
            vec!["web.default.svc.cluster.local."]
        );
        assert!(matches!(
            t.lookup("_tcp.web.default.svc.cluster.local", RecordType::SRV),
            Lookup::NoData
        ));
        assert!(matches!(
            t.lookup("x.web.default.svc.cluster.local", RecordType::A),
            Lookup::NxDomain
        ));
    }

    #[test]
    fn headless_service() {
        let t = table();
        let mut a = answers(&t, "db.default.svc.cluster.local", RecordType::A);
        a.sort();
        assert_eq!(a, vec!["10.244.1.5", "10.244.2.6"]);
        assert_eq!(
            answers(&t, "db-0.db.default.svc.cluster.local", RecordType::A),
            vec!["10.244.1.5"]
        );
        assert_eq!(
            answers(&t, "10-244-2-6.db.default.svc.cluster.local", RecordType::A),
            vec!["10.244.2.6"]
        );
        let srv = answers(&t, "_pg._tcp.db.default.svc.cluster.local", RecordType::SRV);
        assert_eq!(srv.len(), 2);
        assert!(srv.contains(&"0 50 5432 db-0.db.default.svc.cluster.local.".to_string()));
        assert_eq!(
            answers(&t, "5.1.244.10.in-addr.arpa", RecordType::PTR),
            vec!["db-0.db.default.svc.cluster.local."]
        );
        assert!(matches!(
            t.lookup("gone.default.svc.cluster.local", RecordType::A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            t.lookup("7.2.244.10.in-addr.arpa", RecordType::PTR),
            Lookup::NotOurs
        ));
    }

    #[test]
    fn external_name() {
        let t = table();
        assert!(matches!(
            t.lookup("ext.default.svc.cluster.local", RecordType::A),
            Lookup::External { .. }
        ));
        assert_eq!(
            answers(&t, "ext.default.svc.cluster.local", RecordType::CNAME),
            vec!["example.org."]
        );
        assert_eq!(
            answers(&t, "alias.default.svc.cluster.local", RecordType::A),
            vec!["web.default.svc.cluster.local.", "10.96.0.20"]
        );
    }

    #[test]
    fn pods_insecure() {
        let t = table();
        assert_eq!(
            answers(&t, "10-244-1-9.default.pod.cluster.local", RecordType::A),
            vec!["10.244.1.9"]
        );
        assert!(matches!(
            t.lookup("10-244-1-9.default.pod.cluster.local", RecordType::AAAA),
            Lookup::NoData
        ));
        assert!(matches!(
            t.lookup("10-244-1-9.nope.pod.cluster.local", RecordType::A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            t.lookup("notanip.default.pod.cluster.local", RecordType::A),
            Lookup::NxDomain
        ));
    }

    #[test]
    fn dual_stack_service() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: v6, namespace: default}\nspec:\n  clusterIP: \
                    10.96.0.30\n  clusterIPs: [10.96.0.30, 'fd00::30']\n  ports: [{port: 80}]\n";
        let snap = Snapshot::new(1, weft_model::parse(text, "test").unwrap());
        let t = Table::build(&snap, "cluster.local", 5);
        assert_eq!(
            answers(&t, "v6.default.svc.cluster.local", RecordType::A),
            vec!["10.96.0.30"]
        );
        assert_eq!(
            answers(&t, "v6.default.svc.cluster.local", RecordType::AAAA),
            vec!["fd00::30"]
        );
        let reverse = reverse_name("fd00::30".parse().unwrap());
        assert!(
            reverse.starts_with("0.3.0.0.") && reverse.ends_with(".0.0.d.f.ip6.arpa"),
            "{reverse}"
        );
        assert_eq!(
            answers(&t, &reverse, RecordType::PTR),
            vec!["v6.default.svc.cluster.local."]
        );
        assert_eq!(
            answers(&t, "fd00--30.default.pod.cluster.local", RecordType::AAAA),
            vec!["fd00::30"]
        );
    }

    #[test]
    fn nxdomain_and_nodata() {
        let t = table();
        for existing in [
            "svc.cluster.local",
            "pod.cluster.local",
            "default.svc.cluster.local",
            "empty.svc.cluster.local",
            "empty.pod.cluster.local",
        ] {
            assert!(
                matches!(t.lookup(existing, RecordType::A), Lookup::NoData),
                "{existing}"
            );
        }
        for missing in [
            "nope.default.svc.cluster.local",
            "nope.svc.cluster.local",
            "foo.cluster.local",
        ] {
            assert!(
                matches!(t.lookup(missing, RecordType::A), Lookup::NxDomain),
                "{missing}"
            );
        }
        assert!(matches!(t.lookup("example.org", RecordType::A), Lookup::NotOurs));
        assert!(matches!(t.lookup("notcluster.local", RecordType::A), Lookup::NotOurs));
    }
}
