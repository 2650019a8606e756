//! The request path: wire bytes in, wire bytes out (or a question to forward). No sockets, no clock; the fuzz
//! target drives this module directly.

use crate::records::{Lookup, Table};
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

/// The EDNS payload size we advertise (the DNS flag day 2020 value).
pub const OUR_PAYLOAD: u16 = 1232;
/// The largest answer over TCP.
pub const TCP_LIMIT: usize = 65535;

/// What to do with one packet.
#[derive(Debug)]
pub enum Outcome {
    Reply(Vec<u8>),
    Forward(Box<Forward>),
    /// Not answerable at all (too short to carry an ID, or a response rather than a query).
    Drop,
}

/// A question for the upstream resolvers, and how to turn their answer into ours.
#[derive(Debug)]
pub struct Forward {
    /// The client's request as parsed.
    pub request: Message,
    /// The question to ask upstream: the client's own, or the target of an ExternalName CNAME.
    pub query: Query,
    /// Records answered before the upstream ones (the CNAME of an ExternalName Service).
    pub prefix: Vec<Record>,
    /// The largest response the client accepts.
    pub limit: usize,
}

impl Forward {
    /// Whether the client's packet can be sent upstream as it is (apart from the ID).
    pub fn verbatim(&self) -> bool {
        self.prefix.is_empty()
    }

    /// The cache key of the upstream question: lowercase name and type.
    pub fn key(&self) -> (String, u16) {
        (
            self.query.name().to_lowercase().to_ascii(),
            u16::from(self.query.query_type()),
        )
    }

    /// The query to send upstream with `id`: the client's packet when verbatim, else a new question.
    pub fn upstream_query(&self, id: u16, raw: &[u8]) -> Vec<u8> {
        if self.verbatim() && raw.len() >= 12 {
            let mut out = raw.to_vec();
            out[..2].copy_from_slice(&id.to_be_bytes());
            return out;
        }
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.add_query(self.query.clone());
        if self.request.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(OUR_PAYLOAD);
            m.set_edns(e);
        }
        m.to_vec().unwrap_or_default()
    }

    /// Our answer to the client from the upstream's answer (already TTL-adjusted when it came from the cache).
    pub fn relay(&self, upstream: &Message) -> Vec<u8> {
        let mut answers = self.prefix.clone();
        answers.extend(upstream.answers.iter().cloned());
        let additionals = upstream
            .additionals
            .iter()
            .filter(|r| r.record_type() != RecordType::OPT)
            .cloned()
            .collect();
        respond(
            &self.request,
            upstream.metadata.response_code,
            false,
            answers,
            upstream.authorities.clone(),
            additionals,
            self.limit,
        )
    }

    /// The answer when upstream cannot be asked: the CNAME alone for an ExternalName, else SERVFAIL (or REFUSED
    /// when a forwarding loop was detected).
    pub fn fail(&self, rcode: ResponseCode) -> Vec<u8> {
        if self.prefix.is_empty() {
            respond(&self.request, rcode, false, vec![], vec![], vec![], self.limit)
        } else {
            respond(
                &self.request,
                ResponseCode::NoError,
                true,
                self.prefix.clone(),
                vec![],
                vec![],
                self.limit,
            )
        }
    }
}

/// One handled packet, with what the metrics count.
#[derive(Debug)]
pub struct Handled {
    pub outcome: Outcome,
    pub qtype: Option<RecordType>,
    pub rcode: Option<ResponseCode>,
}

/// Whether `qname` (lowercase, no trailing dot) is `zone` or below it.
pub fn in_zone(zone: &str, qname: &str) -> bool {
    qname == zone
        || (qname.len() > zone.len() && qname.ends_with(zone) && qname.as_bytes()[qname.len() - zone.len() - 1] == b'.')
}

/// A header-only answer for a packet that does not parse: its ID, opcode and RD, with `rcode`.
fn header_only(packet: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0] = packet[0];
    out[1] = packet[1];
    out[2] = 0x80 | (packet[2] & 0x79);
    out[3] = 0x80 | (rcode & 0x0f);
    out
}

/// Encodes a response to `req`, truncated (TC, question only) when larger than `limit`.
pub fn respond(
    req: &Message,
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    limit: usize,
) -> Vec<u8> {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = authoritative;
    m.metadata.checking_disabled = req.metadata.checking_disabled;
    m.metadata.response_code = rcode;
    m.queries = req.queries.clone();
    m.answers = answers;
    m.authorities = authorities;
    m.additionals = additionals;
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(OUR_PAYLOAD);
        m.set_edns(e);
    }
    match m.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        Ok(_) => m.truncate().to_vec().unwrap_or_default(),
        Err(_) => {
            let mut fail = Message::error_msg(req.metadata.id, req.metadata.op_code, ResponseCode::ServFail);
            fail.queries = req.queries.clone();
            fail.to_vec().unwrap_or_default()
        }
    }
}

/// The largest UDP answer the request allows: 512 without EDNS, else its advertised size (at least 512).
pub fn udp_limit(req: &Message) -> usize {
    match &req.edns {
        Some(e) => usize::from(e.max_payload()).max(512),
        None => 512,
    }
}

/// Handles one packet. `table` is `None` until the first complete snapshot; `zone` is the cluster domain
/// (lowercase, no trailing dot); `udp` selects the size limit.
pub fn handle(table: Option<&Table>, zone: &str, packet: &[u8], udp: bool) -> Handled {
    handle_into(table, zone, packet, udp, Vec::new())
}

/// `handle`, with the answer of the direct path written into `buf` (whose capacity a caller that answers many
/// packets keeps from one to the next: the reply is `buf` itself then).
pub fn handle_into(table: Option<&Table>, zone: &str, packet: &[u8], udp: bool, mut buf: Vec<u8>) -> Handled {
    if let Some(w) = table.and_then(|t| crate::direct::answer(t, packet, udp, &mut buf)) {
        return Handled {
            outcome: Outcome::Reply(buf),
            qtype: Some(w.qtype),
            rcode: Some(w.rcode),
        };
    }
    general(table, zone, packet, udp)
}

/// `handle` for every packet, through a parsed `Message`.
pub(crate) fn general(table: Option<&Table>, zone: &str, packet: &[u8], udp: bool) -> Handled {
    let drop = Handled {
        outcome: Outcome::Drop,
        qtype: None,
        rcode: None,
    };
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return drop;
    }
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => {
            return Handled {
                outcome: Outcome::Reply(header_only(packet, 1)),
                qtype: None,
                rcode: Some(ResponseCode::FormErr),
            };
        }
    };
    let limit = if udp { udp_limit(&req) } else { TCP_LIMIT };
    let simple = |rcode: ResponseCode, qtype: Option<RecordType>| Handled {
        outcome: Outcome::Reply(respond(&req, rcode, false, vec![], vec![], vec![], limit)),
        qtype,
        rcode: Some(rcode),
    };
    if req.metadata.op_code != OpCode::Query {
        return simple(ResponseCode::NotImp, None);
    }
    if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return simple(ResponseCode::BADVERS, None);
    }
    let [query] = &req.queries[..] else {
        return simple(ResponseCode::FormErr, None);
    };
    let qtype = query.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return simple(ResponseCode::Refused, Some(qtype));
    }
    let lower = query.name().to_lowercase().to_ascii();
    let qname = lower.strip_suffix('.').unwrap_or(&lower);
    let ours = in_zone(zone, qname);
    let forward = |query: Query, prefix: Vec<Record>| Handled {
        outcome: Outcome::Forward(Box::new(Forward {
            request: req.clone(),
            query,
            prefix,
            limit,
        })),
        qtype: Some(qtype),
        rcode: None,
    };
    let Some(table) = table else {
        // Before the first complete snapshot nothing in the zone can be denied: SERVFAIL, never NXDOMAIN.
        if ours || qname.ends_with(".arpa") {
            return simple(ResponseCode::ServFail, Some(qtype));
        }
        return forward(query.clone(), vec![]);
    };
    if ours && query.query_class() != DNSClass::IN {
        return simple(ResponseCode::Refused, Some(qtype));
    }
    let negative = |rcode: ResponseCode| Handled {
        outcome: Outcome::Reply(respond(
            &req,
            rcode,
            true,
            vec![],
            vec![table.soa().clone()],
            vec![],
            limit,
        )),
        qtype: Some(qtype),
        rcode: Some(rcode),
    };
    match table.lookup_as(qname, query.name(), qtype) {
        Lookup::Answer { answers, additionals } => Handled {
            outcome: Outcome::Reply(respond(
                &req,
                ResponseCode::NoError,
                true,
                answers,
                vec![],
                additionals,
                limit,
            )),
            qtype: Some(qtype),
            rcode: Some(ResponseCode::NoError),
        },
        Lookup::NoData => negative(ResponseCode::NoError),
        Lookup::NxDomain => negative(ResponseCode::NXDomain),
        Lookup::External { cname, target } => {
            let mut q = Query::query(target, qtype);
            q.set_query_class(query.query_class());
            forward(q, vec![*cname])
        }
        Lookup::NotOurs => forward(query.clone(), vec![]),
    }
}

/// A name for tests and tools: `Name` from text, relative names made absolute.
pub fn fqdn(s: &str) -> Option<Name> {
    let s = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    Name::from_ascii(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(fqdn(name).unwrap(), ty));
        m.to_vec().unwrap()
    }

    #[test]
    fn servfail_before_the_first_snapshot() {
        let h = handle(
            None,
            "cluster.local",
            &query("web.default.svc.cluster.local", RecordType::A),
            true,
        );
        assert_eq!(h.rcode, Some(ResponseCode::ServFail));
        let h = handle(None, "cluster.local", &query("example.org", RecordType::A), true);
        assert!(matches!(h.outcome, Outcome::Forward(_)));
    }

    #[test]
    fn garbage_is_formerr_or_dropped() {
        let t = Table::empty("cluster.local", 5);
        assert!(matches!(
            handle(Some(&t), "cluster.local", b"abc", true).outcome,
            Outcome::Drop
        ));
        let mut bad = query("web.default.svc.cluster.local", RecordType::A);
        bad.truncate(20);
        let h = handle(Some(&t), "cluster.local", &bad, true);
        assert_eq!(h.rcode, Some(ResponseCode::FormErr));
        // A compression pointer to itself as the question name.
        let mut looped = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let h = handle(Some(&t), "cluster.local", &looped, true);
        assert_eq!(h.rcode, Some(ResponseCode::FormErr));
    }

    #[test]
    fn case_is_ignored() {
        let t = Table::empty("cluster.local", 5);
        let h = handle(
            Some(&t),
            "cluster.local",
            &query("DNS-Version.Cluster.LOCAL", RecordType::TXT),
            true,
        );
        assert_eq!(h.rcode, Some(ResponseCode::NoError));
        let Outcome::Reply(bytes) = h.outcome else { panic!() };
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), "DNS-Version.Cluster.LOCAL.");
    }
}
