//! The common question answered straight from the wire: one A or AAAA question in the cluster domain (what a
//! cluster asks most, search-path NXDOMAINs included) is read without building a `Message`, and the answer is
//! the question copied back with the address records (owner: a pointer to the question's name) or the SOA
//! after it, written into a buffer the caller passes (a UDP worker reuses its buffers, so nothing is allocated).
//! Anything else (other types or classes, a compressed or unusual question name, EDNS other than a plain
//! version-0 OPT, an answer over the size limit) returns `None` and takes the general path of `answer::handle`,
//! which gives the same answers (tests below compare both).

use crate::answer::{OUR_PAYLOAD, TCP_LIMIT};
use crate::records::{Direct, Table};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// What `answer` wrote, for the metrics.
#[derive(Debug)]
pub struct Written {
    pub qtype: RecordType,
    pub rcode: ResponseCode,
}

/// The longest name in text form without the trailing dot (RFC 1035: 255 bytes on the wire).
const MAX_NAME: usize = 253;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

fn u16_at(packet: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(packet.get(at..at + 2)?.try_into().ok()?))
}

/// Answers `packet` from `table` into `out` (cleared first) when it is the common question (see the module);
/// `udp` selects the size limit. On `None`, `out` holds nothing of use.
pub fn answer(table: &Table, packet: &[u8], udp: bool, out: &mut Vec<u8>) -> Option<Written> {
    // A query (QR 0), opcode QUERY, nothing set but RD; one question, nothing else but an optional OPT.
    let header = packet.get(..12)?;
    if header[2] & 0xfe != 0
        || u16_at(header, 4)? != 1
        || u16_at(header, 6)? != 0
        || u16_at(header, 8)? != 0
        || u16_at(header, 10)? > 1
    {
        return None;
    }
    // The question's name, lowercased into text without the trailing dot; plain labels only (no compression,
    // no bytes that the text form would have to escape).
    let mut name = [0u8; MAX_NAME];
    let (mut len, mut at) = (0, 12);
    loop {
        let label = usize::from(*packet.get(at)?);
        at += 1;
        if label == 0 {
            break;
        }
        if label > 63 || len + label + usize::from(len > 0) > MAX_NAME {
            return None;
        }
        if len > 0 {
            name[len] = b'.';
            len += 1;
        }
        for &b in packet.get(at..at + label)? {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name[len] = b.to_ascii_lowercase();
            len += 1;
        }
        at += label;
    }
    let qname = std::str::from_utf8(&name[..len]).ok()?;
    let qtype = RecordType::from(u16_at(packet, at)?);
    if u16_at(packet, at + 2)? != CLASS_IN {
        return None;
    }
    let question = 12..at + 4;
    let edns = match u16_at(header, 10)? {
        0 => None,
        _ => Some(opt_payload(packet, question.end)?),
    };
    if edns.is_none() && packet.len() != question.end {
        return None;
    }
    let limit = match (udp, edns) {
        (false, _) => TCP_LIMIT,
        (true, Some(payload)) => usize::from(payload).max(512),
        (true, None) => 512,
    };

    out.clear();
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&packet[question.clone()]);
    let mut answers: u16 = 0;
    let ttl = table.ttl().to_be_bytes();
    let found = table.direct(qname, qtype, |address| {
        answers += 1;
        // Owner: a pointer to the question's name at offset 12, type and class as asked.
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&packet[at..at + 4]);
        out.extend_from_slice(&ttl);
        out.extend_from_slice(&(address.len() as u16).to_be_bytes());
        out.extend_from_slice(address);
    })?;
    let (rcode, authority) = match found {
        Direct::Answered => (ResponseCode::NoError, 0u16),
        Direct::NoData => (ResponseCode::NoError, 1),
        Direct::NxDomain => (ResponseCode::NXDomain, 1),
    };
    if authority > 0 {
        if table.soa_wire().is_empty() {
            return None;
        }
        out.extend_from_slice(table.soa_wire());
    }
    if edns.is_some() {
        // OPT: root owner, our payload size as the class, extended rcode 0, version 0, no flags, no options.
        out.extend_from_slice(&[0]);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&OUR_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    if out.len() > limit {
        return None;
    }
    out[..2].copy_from_slice(&header[..2]);
    // QR, AA, RD as asked; RA, CD as asked, the rcode.
    out[2] = 0x84 | (header[2] & 0x01);
    out[3] = 0x80 | (header[3] & 0x10) | rcode.low();
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    out[8..10].copy_from_slice(&authority.to_be_bytes());
    out[10..12].copy_from_slice(&u16::from(edns.is_some()).to_be_bytes());
    Some(Written { qtype, rcode })
}

/// The payload size of a version-0 OPT record that is the packet's last record at `at`.
fn opt_payload(packet: &[u8], at: usize) -> Option<u16> {
    // Root owner, type OPT, payload, extended rcode, version, flags, options length, options.
    if *packet.get(at)? != 0 || u16_at(packet, at + 1)? != TYPE_OPT || *packet.get(at + 6)? != 0 {
        return None;
    }
    let options = usize::from(u16_at(packet, at + 9)?);
    (packet.len() == at + 11 + options).then_some(u16_at(packet, at + 3)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{Outcome, fqdn, handle};
    use hickory_proto::op::{Edns, Message, Query};
    use weft_model::Snapshot;

    const OBJECTS: &str = include_str!("../tests/fixtures/cluster.yaml");

    fn table() -> Table {
        let snap = Snapshot::new(3, weft_model::parse(OBJECTS, "test").unwrap());
        Table::build(&snap, "cluster.local", 5)
    }

    fn query(name: &str, ty: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(fqdn(name).unwrap(), ty));
        if let Some(payload) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// The general path's answer, with the fast path out of the way.
    fn general(t: &Table, packet: &[u8], udp: bool) -> Vec<u8> {
        match crate::answer::general(Some(t), "cluster.local", packet, udp).outcome {
            Outcome::Reply(bytes) => bytes,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_answers_as_the_general_path() {
        let t = table();
        let cases = [
            ("web.default.svc.cluster.local", RecordType::A),
            ("WEB.Default.svc.cluster.local", RecordType::A),
            ("web.default.svc.cluster.local", RecordType::AAAA),
            ("db.default.svc.cluster.local", RecordType::A),
            ("db-0.db.default.svc.cluster.local", RecordType::A),
            ("nope.default.svc.cluster.local", RecordType::A),
            ("example.com.default.svc.cluster.local", RecordType::AAAA),
            ("default.svc.cluster.local", RecordType::A),
            ("_http._tcp.web.default.svc.cluster.local", RecordType::A),
            ("10-244-1-9.default.pod.cluster.local", RecordType::A),
            ("10-244-1-9.default.pod.cluster.local", RecordType::AAAA),
            ("10-244-1-9.nope.pod.cluster.local", RecordType::A),
            ("cluster.local", RecordType::A),
        ];
        for (name, ty) in cases {
            for edns in [None, Some(4096), Some(100)] {
                let q = query(name, ty, edns);
                // A reused buffer: what it held before does not show.
                let mut bytes = vec![0xff; 700];
                let fast = answer(&t, &q, true, &mut bytes).unwrap_or_else(|| panic!("{name} {ty} {edns:?} not fast"));
                let slow = general(&t, &q, true);
                let (f, s) = (Message::from_vec(&bytes).unwrap(), Message::from_vec(&slow).unwrap());
                assert_eq!(f, s, "{name} {ty} {edns:?}");
                assert_eq!(Some(fast.rcode), Some(s.metadata.response_code));
                // And through `handle`, which takes the fast path first.
                let Outcome::Reply(via) = handle(Some(&t), "cluster.local", &q, true).outcome else {
                    panic!()
                };
                assert_eq!(via, bytes);
            }
        }
    }

    #[test]
    fn everything_else_takes_the_general_path() {
        let t = table();
        for (name, ty) in [
            ("web.default.svc.cluster.local", RecordType::SRV),
            ("ext.default.svc.cluster.local", RecordType::A),
            ("alias.default.svc.cluster.local", RecordType::A),
            ("example.org", RecordType::A),
            ("20.0.96.10.in-addr.arpa", RecordType::A),
        ] {
            assert!(
                answer(&t, &query(name, ty, None), true, &mut Vec::new()).is_none(),
                "{name} {ty}"
            );
        }
        let mut v1 = query("web.default.svc.cluster.local", RecordType::A, Some(1232));
        let opt = v1.len() - 11;
        v1[opt + 6] = 1;
        assert!(answer(&t, &v1, true, &mut Vec::new()).is_none(), "EDNS version 1");
        let mut trailing = query("web.default.svc.cluster.local", RecordType::A, None);
        trailing.push(0);
        assert!(answer(&t, &trailing, true, &mut Vec::new()).is_none());
        for cut in 0..trailing.len() - 1 {
            assert!(
                answer(&t, &trailing[..cut], true, &mut Vec::new()).is_none(),
                "cut at {cut}"
            );
        }
    }
}
