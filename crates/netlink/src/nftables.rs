//! nftables transactions over nfnetlink directly: one batch (all or nothing), one socket, no `nft` process and
//! so no cache of the whole table to read first. weft-cni uses it for its element updates, the service proxy for
//! its incremental syncs (chains, rules from [`crate::nft_rules`], sets and elements); whole tables and anything
//! else go through `nft` (see `nft.rs`).

use crate::error::{Error, Result};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// The value side of a map element (also the data of an `immediate` expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Value(Vec<u8>),
    Jump(String),
    Goto(String),
    Drop,
}

/// A named set as `nft` declares it (`type ipv4_addr; flags dynamic,timeout; timeout 60s;` is key type 7,
/// key length 4, flags `NFT_SET_TIMEOUT | NFT_SET_EVAL`, timeout 60,000 ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub flags: u32,
    pub key_type: u32,
    pub key_len: u32,
    pub timeout_ms: Option<u64>,
}

/// One message of a transaction, in the order the kernel is to apply them: everything a message names must
/// exist by then (or be added earlier in the batch), exactly as in an `nft` script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    AddSet(&'a SetSpec),
    DeleteSet(&'a str),
    AddChain(&'a str),
    /// Deletes every rule of the chain (`flush chain`).
    FlushChain(&'a str),
    DeleteChain(&'a str),
    /// Appends a rule; `expressions` is the body of NFTA_RULE_EXPRESSIONS (see [`crate::nft_rules::Rule`]).
    AddRule {
        chain: &'a str,
        expressions: &'a [u8],
    },
    AddElements(&'a Elements),
    /// Deletes elements by key (their data is not sent).
    DeleteElements(&'a Elements),
}

/// Elements for one set of one table: (key bytes, data for maps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elements {
    pub set: String,
    pub elements: Vec<(Vec<u8>, Option<Data>)>,
}

pub(crate) fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

pub(crate) fn nested(buf: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(buf, kind | NLA_F_NESTED, &inner);
}

pub(crate) fn cstr(s: &str) -> Vec<u8> {
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

pub(crate) fn data_attr(buf: &mut Vec<u8>, kind: u16, data: &Data) {
    let verdict = |d: &mut Vec<u8>, code: i32, chain: Option<&str>| {
        nested(d, 2, |v| {
            // NFTA_DATA_VERDICT
            attr(v, 1, &code.to_be_bytes()); // NFTA_VERDICT_CODE
            if let Some(chain) = chain {
                attr(v, 2, &cstr(chain)); // NFTA_VERDICT_CHAIN
            }
        })
    };
    nested(buf, kind, |d| match data {
        Data::Value(v) => attr(d, 1, v), // NFTA_DATA_VALUE
        Data::Jump(chain) => verdict(d, NFT_JUMP, Some(chain)),
        Data::Goto(chain) => verdict(d, NFT_GOTO, Some(chain)),
        Data::Drop => verdict(d, NF_DROP, None),
    });
}

/// The attributes of a NEWSETELEM or DELSETELEM message for one set (deletions carry keys only).
fn element_attrs(table: &str, set: &Elements, delete: bool) -> Vec<u8> {
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
    attrs
}

/// The message type, flags and attributes of one operation; every message asks for an acknowledgement.
fn op_message(table: &str, op: &Op, set_id: &mut u32) -> (u16, u16, Vec<u8>) {
    let create = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
    let plain = NLM_F_REQUEST | NLM_F_ACK;
    match op {
        Op::AddElements(set) => return (NFT_MSG_NEWSETELEM, create, element_attrs(table, set, false)),
        Op::DeleteElements(set) => return (NFT_MSG_DELSETELEM, plain, element_attrs(table, set, true)),
        _ => {}
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, 1, &cstr(table)); // NFTA_{SET,CHAIN,RULE}_TABLE
    match op {
        Op::AddSet(spec) => {
            *set_id += 1;
            attr(&mut attrs, 2, &cstr(&spec.name)); // NFTA_SET_NAME
            attr(&mut attrs, 3, &spec.flags.to_be_bytes()); // NFTA_SET_FLAGS
            attr(&mut attrs, 4, &spec.key_type.to_be_bytes()); // NFTA_SET_KEY_TYPE
            attr(&mut attrs, 5, &spec.key_len.to_be_bytes()); // NFTA_SET_KEY_LEN
            attr(&mut attrs, 10, &set_id.to_be_bytes()); // NFTA_SET_ID
            if let Some(ms) = spec.timeout_ms {
                attr(&mut attrs, 11, &ms.to_be_bytes()); // NFTA_SET_TIMEOUT
            }
            // NFTA_SET_USERDATA as nft writes it: NFTNL_UDATA_SET_KEYBYTEORDER = big endian.
            attr(&mut attrs, 13, &[0, 4, 2, 0, 0, 0]);
            (NFT_MSG_NEWSET, create, attrs)
        }
        Op::DeleteSet(name) => {
            attr(&mut attrs, 2, &cstr(name)); // NFTA_SET_NAME
            (NFT_MSG_DELSET, plain, attrs)
        }
        Op::AddChain(name) => {
            attr(&mut attrs, 3, &cstr(name)); // NFTA_CHAIN_NAME
            (NFT_MSG_NEWCHAIN, create, attrs)
        }
        Op::DeleteChain(name) => {
            attr(&mut attrs, 3, &cstr(name)); // NFTA_CHAIN_NAME
            (NFT_MSG_DELCHAIN, plain, attrs)
        }
        Op::FlushChain(chain) => {
            attr(&mut attrs, 2, &cstr(chain)); // NFTA_RULE_CHAIN
            (NFT_MSG_DELRULE, plain, attrs)
        }
        Op::AddRule { chain, expressions } => {
            attr(&mut attrs, 2, &cstr(chain)); // NFTA_RULE_CHAIN
            attr(&mut attrs, 4 | NLA_F_NESTED, expressions); // NFTA_RULE_EXPRESSIONS
            (NFT_MSG_NEWRULE, create | NLM_F_APPEND, attrs)
        }
        Op::AddElements(_) | Op::DeleteElements(_) => unreachable!("handled above"),
    }
}

/// The batch of `ops` on `table`, as one transaction; element operations without elements are left out.
/// Returns the bytes and the sequence numbers whose acknowledgements the kernel will send.
pub fn ops_batch(table: &str, family: u8, ops: &[Op], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
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
    let mut set_id = 0;
    for op in ops {
        if let Op::AddElements(set) | Op::DeleteElements(set) = op
            && set.elements.is_empty()
        {
            continue;
        }
        seq += 1;
        let (kind, flags, attrs) = op_message(table, op, &mut set_id);
        message(
            &mut out,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            seq,
            family,
            0,
            &attrs,
        );
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

/// The batch that adds every element of `add` to `table` (family `inet` is 1), then deletes every element
/// of `delete` (by key), as one transaction; sets without elements are left out. Returns the bytes and the
/// sequence numbers whose acknowledgements the kernel will send.
pub fn batch(table: &str, family: u8, add: &[Elements], delete: &[Elements], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let ops: Vec<Op> = add
        .iter()
        .map(Op::AddElements)
        .chain(delete.iter().map(Op::DeleteElements))
        .collect();
    ops_batch(table, family, &ops, first_seq)
}

/// Sends the [`batch`] of `add` and `delete` and waits until the kernel has acknowledged every message of it
/// (so it is committed, or refused as a whole). A missing table, set or jump target is an error
/// (`Error::is_not_found`), as is an existing key with different data (`Error::is_exists`).
///
/// Returns the socket, still open: releasing an nfnetlink socket after a transaction that deleted something
/// waits for an RCU grace period (the kernel flushes its deferred destroy work then, holding the nftables
/// commit mutex), so the caller decides when and where it is closed.
pub fn transact(table: &str, family: u8, add: &[Elements], delete: &[Elements]) -> Result<OwnedFd> {
    let ops: Vec<Op> = add
        .iter()
        .map(Op::AddElements)
        .chain(delete.iter().map(Op::DeleteElements))
        .collect();
    send(None, table, family, &ops)
}

/// The tables of the calling thread's network namespace as (family as nfnetlink numbers it, name): `inet weft`
/// is (1, "weft"). One dump over nfnetlink, no `nft` process: cheap enough to poll.
pub fn tables() -> Result<Vec<(u8, String)>> {
    let fail = |source: io::Error| Error::Netlink {
        op: "listing nftables tables".into(),
        source,
    };
    let socket = Socket::new(NETLINK_NETFILTER).map_err(fail)?;
    let mut out = Vec::new();
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
    message(&mut out, kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0, 0, &[]);
    socket.send(&out, 0).map_err(fail)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tables = Vec::new();
    loop {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(fail(err)),
        };
        let mut done = false;
        let mut failed = None;
        crate::monitor::messages(&buf[..n], |kind, body| match kind {
            NLMSG_DONE => done = true,
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    failed = Some(code);
                }
                done = true;
            }
            _ if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE => {
                let name = crate::monitor::attributes(body, 4).find(|(attr, _)| *attr == 1);
                if let (Some(family), Some((_, name))) = (body.first(), name) {
                    tables.push((*family, crate::monitor::text(name)));
                }
            }
            _ => {}
        });
        if let Some(code) = failed {
            return Err(fail(io::Error::from_raw_os_error(-code)));
        }
        if done {
            return Ok(tables);
        }
    }
}

/// Sends the [`ops_batch`] of `ops` and waits until the kernel has acknowledged every message of it (so it is
/// committed, or refused as a whole), on `socket` when given (an nfnetlink socket this returned before, in the
/// calling thread's network namespace or not), else on a new one in the calling thread's namespace. Errors as
/// for [`transact`]; the socket is returned for the same reason, and may be used for the next transaction.
pub fn send(socket: Option<OwnedFd>, table: &str, family: u8, ops: &[Op]) -> Result<OwnedFd> {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    let op = format!("changing table {table}");
    let fail = |source: io::Error| Error::Netlink { op: op.clone(), source };
    let socket = match socket {
        // SAFETY: the descriptor is an open netlink socket (made by this function) whose ownership moves in.
        Some(fd) => unsafe { Socket::from_raw_fd(fd.into_raw_fd()) },
        // Left unbound: the kernel binds it on the first send, which goes to the kernel.
        None => Socket::new(NETLINK_NETFILTER).map_err(fail)?,
    };
    let first = SEQ.fetch_add(ops.len() as u32 + 2, Ordering::Relaxed);
    let (out, mut pending) = ops_batch(table, family, ops, first);
    // Room for the whole batch and for one acknowledgement per message; best effort (root may force it).
    grow_buffer(&socket, libc::SO_SNDBUFFORCE, out.len() + 64 * 1024);
    grow_buffer(&socket, libc::SO_RCVBUFFORCE, pending.len() * 1024 + 256 * 1024);
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

fn grow_buffer(socket: &Socket, option: libc::c_int, size: usize) {
    let size = size.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt(2) reads `size_of::<c_int>()` bytes from a valid pointer to a c_int.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The longest chain, set or map name the kernel takes (NFT_NAME_MAXLEN is 256 with the terminating NUL).
pub const NAME_MAX: usize = 255;

/// `PREFIX-READABLE` as an object name; when that is too long for the kernel (a 253-character pod name can
/// do it), the readable part is cut and eight characters of a hash of the whole keep the name unique.
pub fn object_name(prefix: &str, readable: &str) -> String {
    let name = format!("{prefix}-{readable}");
    if name.len() <= NAME_MAX {
        return name;
    }
    let hash = short_hash(&name);
    let mut keep = NAME_MAX - prefix.len() - hash.len() - 2;
    while !readable.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{prefix}-{hash}-{}", &readable[..keep])
}

/// Eight base-32 characters of a 64-bit FNV-1a hash: names stay unique when their readable part is cut.
pub fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8)
        .map(|i| ALPHABET[((h >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_fit_the_kernel_and_stay_unique() {
        assert_eq!(object_name("ing", "default/web-0"), "ing-default/web-0");
        let long = |last: char| format!("{}/{}{last}", "n".repeat(63), "p".repeat(252));
        let (a, b) = (object_name("ing", &long('a')), object_name("ing", &long('b')));
        assert!(a.len() <= NAME_MAX && b.len() <= NAME_MAX, "{} {}", a.len(), b.len());
        assert_ne!(a, b);
        assert!(a.starts_with("ing-") && a.ends_with('p'));
        // Cut on a character boundary.
        assert!(object_name("egr", &"é".repeat(200)).len() <= NAME_MAX);
    }

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

    #[test]
    fn rules_are_appended_and_new_sets_numbered() {
        let spec = SetSpec {
            name: "aff".into(),
            flags: 0x30,
            key_type: 7,
            key_len: 4,
            timeout_ms: Some(60_000),
        };
        let rule = [0u8; 4];
        let ops = [
            Op::AddSet(&spec),
            Op::AddChain("c"),
            Op::AddRule {
                chain: "c",
                expressions: &rule,
            },
            Op::FlushChain("c"),
            Op::DeleteChain("c"),
            Op::DeleteSet("aff"),
        ];
        let (out, seqs) = ops_batch("weft", 1, &ops, 1);
        assert_eq!(seqs, vec![2, 3, 4, 5, 6, 7]);
        let m = messages(&out);
        let kinds: Vec<u16> = m.iter().map(|(k, _, _)| *k & 0xff).collect();
        assert_eq!(
            kinds,
            [
                0x10,
                NFT_MSG_NEWSET,
                NFT_MSG_NEWCHAIN,
                NFT_MSG_NEWRULE,
                NFT_MSG_DELRULE,
                NFT_MSG_DELCHAIN,
                NFT_MSG_DELSET,
                0x11
            ]
        );
        assert_eq!(m[3].1 & (NLM_F_APPEND | NLM_F_CREATE), NLM_F_APPEND | NLM_F_CREATE);
        assert!(m[1..7].iter().all(|(_, flags, _)| flags & NLM_F_ACK == NLM_F_ACK));
        assert!(
            out.windows(8).any(|w| w == 60_000u64.to_be_bytes()),
            "the set's timeout in ms"
        );
    }
}
