//! Adding and deleting set and map elements over nfnetlink directly: one batch, one socket, no `nft` process.
//! Used for the hot path (an ADD or DEL changes a few elements); everything else goes through `nft` (see
//! `nft.rs`).

use crate::error::{Error, Result};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
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
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
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

/// Appends nlmsghdr + nfgenmsg + attributes to `out`.
fn message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    out.extend_from_slice(&((16 + 4 + attrs.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
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

/// One NEWSETELEM or DELSETELEM message for one set (deletions carry keys only).
fn set_message(out: &mut Vec<u8>, table: &str, family: u8, set: &Elements, delete: bool, seq: u32) {
    let mut attrs = Vec::new();
    attr(&mut attrs, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
    attr(&mut attrs, 2, &cstr(&set.set)); // NFTA_SET_ELEM_LIST_SET
    nested(&mut attrs, 3, |list| {
        // NFTA_SET_ELEM_LIST_ELEMENTS
        for (key, data) in &set.elements {
            nested(list, 1, |elem| {
                // NFTA_LIST_ELEM
                data_attr(elem, 1, &Data::Value(key.clone())); // NFTA_SET_ELEM_KEY
                if let Some(data) = data.as_ref().filter(|_| !delete) {
                    data_attr(elem, 2, data); // NFTA_SET_ELEM_DATA
                }
            });
        }
    });
    let (op, flags) = if delete {
        (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
    } else {
        (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK)
    };
    message(out, (NFNL_SUBSYS_NFTABLES << 8) | op, flags, seq, family, 0, &attrs);
}

/// The batch that adds every element of `add` to `table` (family `inet` is 1), then deletes every element
/// of `delete` (by key), as one transaction; sets without elements are left out. Returns the bytes and the
/// sequence numbers whose acknowledgements the kernel will send.
pub fn batch(table: &str, family: u8, add: &[Elements], delete: &[Elements], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out = Vec::new();
    let mut seq = first_seq;
    message(
        &mut out,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let mut seqs = Vec::new();
    let sets = add.iter().map(|s| (s, false)).chain(delete.iter().map(|s| (s, true)));
    for (set, is_delete) in sets.filter(|(s, _)| !s.elements.is_empty()) {
        seq += 1;
        set_message(&mut out, table, family, set, is_delete, seq);
        seqs.push(seq);
    }
    message(
        &mut out,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq + 1,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (out, seqs)
}

/// Sends the [`batch`] of `add` and `delete` and waits until the kernel has acknowledged every message of it
/// (so it is committed, or refused as a whole). A missing table, set or jump target is an error
/// (`Error::is_not_found`), as is an existing key with different data (`Error::is_exists`).
///
/// Returns the socket, still open: releasing an nfnetlink socket after a transaction that deleted something
/// waits for an RCU grace period (the kernel flushes its deferred destroy work then, holding the nftables
/// commit mutex), so the caller decides when and where it is closed.
pub fn transact(table: &str, family: u8, add: &[Elements], delete: &[Elements]) -> Result<OwnedFd> {
    let op = format!("changing elements of table {table}");
    let fail = |source: io::Error| Error::Netlink { op: op.clone(), source };
    // Left unbound: the kernel binds it on the first send, which goes to the kernel.
    let socket = Socket::new(NETLINK_NETFILTER).map_err(fail)?;
    let (out, mut pending) = batch(table, family, add, delete, 1);
    if !pending.is_empty() {
        socket.send(&out, 0).map_err(fail)?;
    }
    let mut buf = vec![0u8; 16 * 1024];
    while !pending.is_empty() {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(fail(err)),
        };
        let mut at = 0;
        while at + 16 <= n {
            let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap_or_default());
            let len = word(at) as usize;
            let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap_or_default());
            let seq = word(at + 8);
            if len < 16 {
                return Err(Error::Decode {
                    op,
                    msg: "short netlink message".into(),
                });
            }
            if kind == NLMSG_ERROR && at + 20 <= n {
                let code = word(at + 16) as i32;
                if code != 0 {
                    return Err(fail(io::Error::from_raw_os_error(-code)));
                }
                pending.retain(|s| *s != seq);
            }
            at += len.next_multiple_of(4);
        }
    }
    // SAFETY: `into_raw_fd` gives up ownership of the socket's open descriptor; the OwnedFd takes it over.
    Ok(unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(out: &[u8]) -> Vec<(u16, u16, usize)> {
        let mut at = 0;
        let mut v = Vec::new();
        while at < out.len() {
            let len = u32::from_ne_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(out[at + 4..at + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(out[at + 6..at + 8].try_into().unwrap());
            v.push((kind, flags, len));
            at += len;
        }
        v
    }

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
        let (out, seqs) = batch("weft-cni", 1, &sets, &[], 7);
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

    #[test]
    fn additions_come_before_deletions_and_deletions_carry_keys_only() {
        let masq = Elements {
            set: "masq4".into(),
            elements: vec![(vec![10, 0, 0, 5], Some(Data::Jump("masq-x".into())))],
        };
        let empty = Elements {
            set: "empty".into(),
            elements: vec![],
        };
        let (out, seqs) = batch("weft-cni", 1, &[masq.clone(), empty], std::slice::from_ref(&masq), 1);
        assert_eq!(seqs, vec![2, 3]);
        let m = messages(&out);
        let kinds: Vec<u16> = m.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(
            kinds,
            [NFNL_MSG_BATCH_BEGIN, (10 << 8) | 12, (10 << 8) | 14, NFNL_MSG_BATCH_END]
        );
        assert_eq!(m[1].1 & NLM_F_CREATE, NLM_F_CREATE);
        assert_eq!(m[2].1 & (NLM_F_CREATE | NLM_F_ACK), NLM_F_ACK);
        let (add_len, del_len) = (m[1].2, m[2].2);
        let add = &out[m[0].2..m[0].2 + add_len];
        let del = &out[m[0].2 + add_len..m[0].2 + add_len + del_len];
        assert!(add.windows(7).any(|w| w == b"masq-x\0"));
        assert!(!del.windows(7).any(|w| w == b"masq-x\0"), "a deletion names no data");
        assert_eq!(out.len() % 4, 0);
    }
}
