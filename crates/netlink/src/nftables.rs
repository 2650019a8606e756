//! Adding set and map elements over nfnetlink directly: one batch, one socket, no `nft` process. Used for
//! the hot path (an ADD adds a few elements); everything else goes through `nft` (see `nft.rs`).

use crate::error::{Error, Result};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::io;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFT_JUMP: i32 = -3;

/// The value side of a map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Jump(String),
}

/// Elements for one set of one table: (key bytes, data for maps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elements {
    pub set: String,
    pub elements: Vec<(Vec<u8>, Option<Data>)>,
}

fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nested(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(buf, kind | NLA_F_NESTED, &inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// nlmsghdr + nfgenmsg + attributes.
fn message(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.push(family);
    m.push(0); // NFNETLINK_V0
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

fn data_attr(buf: &mut Vec<u8>, kind: u16, data: &Data) {
    nested(buf, kind, |d| match data {
        Data::Value(v) => attr(d, 1, v), // NFTA_DATA_VALUE
        Data::Jump(chain) => nested(d, 2, |v| {
            // NFTA_DATA_VERDICT
            attr(v, 1, &NFT_JUMP.to_be_bytes()); // NFTA_VERDICT_CODE
            attr(v, 2, &cstr(chain)); // NFTA_VERDICT_CHAIN
        }),
    });
}

/// The batch that adds every element of `sets` to `table` (family `inet` is 1) as one transaction.
pub fn batch(table: &str, family: u8, sets: &[Elements], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out = message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        first_seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let mut seqs = Vec::new();
    let mut seq = first_seq;
    for set in sets.iter().filter(|s| !s.elements.is_empty()) {
        seq += 1;
        let mut attrs = Vec::new();
        attr(&mut attrs, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
        attr(&mut attrs, 2, &cstr(&set.set)); // NFTA_SET_ELEM_LIST_SET
        nested(&mut attrs, 3, |list| {
            // NFTA_SET_ELEM_LIST_ELEMENTS
            for (key, data) in &set.elements {
                nested(list, 1, |elem| {
                    // NFTA_LIST_ELEM
                    data_attr(elem, 1, &Data::Value(key.clone())); // NFTA_SET_ELEM_KEY
                    if let Some(data) = data {
                        data_attr(elem, 2, data); // NFTA_SET_ELEM_DATA
                    }
                });
            }
        });
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
        out.extend(message(
            kind,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            seq,
            family,
            0,
            &attrs,
        ));
        seqs.push(seq);
    }
    out.extend(message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq + 1,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    (out, seqs)
}

/// Adds the elements in one transaction. A missing table, set or jump target is an error
/// (`Error::is_not_found`), as is an existing key with different data (`Error::is_exists`).
pub fn add_elements(table: &str, family: u8, sets: &[Elements]) -> Result<()> {
    let op = format!("adding elements to table {table}");
    let fail = |source: io::Error| Error::Netlink { op: op.clone(), source };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(fail)?;
    socket.bind_auto().map_err(fail)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
    let (out, mut pending) = batch(table, family, sets, 1);
    if pending.is_empty() {
        return Ok(());
    }
    socket.send(&out, 0).map_err(fail)?;
    let mut buf = vec![0u8; 16 * 1024];
    while !pending.is_empty() {
        let n = socket.recv(&mut &mut buf[..], 0).map_err(fail)?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
            let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap_or_default());
            if len < 16 {
                return Err(Error::Decode {
                    op,
                    msg: "short netlink message".into(),
                });
            }
            if kind == NLMSG_ERROR && at + 20 <= n {
                let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap_or_default());
                if code != 0 {
                    return Err(fail(io::Error::from_raw_os_error(-code)));
                }
                pending.retain(|s| *s != seq);
            }
            at += len.next_multiple_of(4);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_frames_begin_elements_end_with_acks_requested_only_for_elements() {
        let sets = [
            Elements {
                set: "masq4".into(),
                elements: vec![(vec![10, 0, 0, 5], Some(Data::Jump("masq-x".into())))],
            },
            Elements {
                set: "empty".into(),
                elements: vec![],
            },
        ];
        let (out, seqs) = batch("weft-cni", 1, &sets, 7);
        assert_eq!(seqs, vec![8]);
        let first_len = u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(first_len, 20);
        assert_eq!(u16::from_ne_bytes(out[4..6].try_into().unwrap()), NFNL_MSG_BATCH_BEGIN);
        let elem = &out[first_len..];
        let kind = u16::from_ne_bytes(elem[4..6].try_into().unwrap());
        assert_eq!(kind, (10 << 8) | 12);
        let flags = u16::from_ne_bytes(elem[6..8].try_into().unwrap());
        assert_eq!(flags & NLM_F_ACK, NLM_F_ACK);
        assert!(out.windows(7).any(|w| w == b"masq-x\0"));
        assert_eq!(out.len() % 4, 0);
    }
}
