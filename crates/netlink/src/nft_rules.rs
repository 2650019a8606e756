//! The few nft rule shapes the service proxy generates, as data: parsed from (and rendered back to) their nft
//! text, and encoded as the netlink expressions `nft` itself sends for them (`nft --debug=netlink`), so a rule
//! added over nfnetlink lists exactly like one added with `nft -f`. In an `inet` table every `ip saddr` match
//! is preceded by `meta nfproto ipv4`, as nft does it.
//!
//! Anything else (an anonymous set of several ranges, IPv6, another match) does not parse: the caller sends
//! that transaction through `nft`.

use crate::nftables::{Data, SetSpec, attr, cstr, data_attr, nested};
use ipnet::Ipv4Net;
use std::fmt;
use std::net::Ipv4Addr;

/// Where a rule sends the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Jump(String),
    Goto(String),
}

/// The source address a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `ip saddr 10.244.1.5`
    Host(Ipv4Addr),
    /// `ip saddr 10.244.0.0/16`
    Net(Ipv4Net),
    /// `ip saddr { 172.18.0.0/24 }`: an anonymous set of one range, which nft turns into a plain comparison.
    OneRange(Ipv4Net),
}

/// A transport protocol by its nft name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    Tcp,
    Udp,
    Sctp,
}

/// One rule of one of the proxy's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `ip saddr [!=] SOURCE VERDICT`
    Saddr {
        negate: bool,
        source: Source,
        verdict: Verdict,
    },
    /// `ip saddr @SET VERDICT`
    SaddrInSet { set: String, verdict: Verdict },
    /// `numgen random mod MODULUS VALUE VERDICT`
    Numgen { modulus: u32, value: u32, verdict: Verdict },
    /// `fib saddr type local VERDICT`
    FibSaddrLocal(Verdict),
    /// `meta l4proto PROTO dnat ip to ADDR:PORT`
    Dnat { proto: L4, addr: Ipv4Addr, port: u16 },
    /// `meta l4proto PROTO dnat ip to numgen random mod MODULUS offset OFFSET map @MAP`: one of the endpoints
    /// at keys OFFSET.. of a map of `address . port`.
    DnatMap {
        proto: L4,
        modulus: u32,
        offset: u32,
        map: String,
    },
    /// `numgen random mod MODULUS VALUE meta l4proto PROTO dnat ip to ADDR:PORT`
    NumgenDnat {
        modulus: u32,
        value: u32,
        proto: L4,
        addr: Ipv4Addr,
        port: u16,
    },
    /// `update @SET { ip saddr }`
    UpdateSaddr { set: String },
    /// `VERDICT`
    Verdict(Verdict),
}

impl L4 {
    pub fn parse(text: &str) -> Option<L4> {
        match text {
            "tcp" => Some(L4::Tcp),
            "udp" => Some(L4::Udp),
            "sctp" => Some(L4::Sctp),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
            L4::Sctp => 132,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Sctp => "sctp",
        }
    }
}

impl Verdict {
    /// `drop`, `jump CHAIN`, `goto CHAIN` (as words).
    fn parse_words(words: &[&str]) -> Option<Verdict> {
        match words {
            ["drop"] => Some(Verdict::Drop),
            ["jump", chain] => Some(Verdict::Jump(chain.to_string())),
            ["goto", chain] => Some(Verdict::Goto(chain.to_string())),
            _ => None,
        }
    }

    /// A map element's verdict text (`goto CHAIN`).
    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::parse_words(&text.split_whitespace().collect::<Vec<_>>())
    }

    /// The verdict as set-element or immediate data.
    pub fn data(&self) -> Data {
        match self {
            Verdict::Drop => Data::Drop,
            Verdict::Jump(c) => Data::Jump(c.clone()),
            Verdict::Goto(c) => Data::Goto(c.clone()),
        }
    }
}

impl Source {
    fn parse(text: &str) -> Option<Source> {
        if text.contains('/') {
            Some(Source::Net(text.parse().ok()?))
        } else {
            Some(Source::Host(text.parse().ok()?))
        }
    }

    fn net(self) -> Ipv4Net {
        match self {
            Source::Host(a) => Ipv4Net::from(a),
            Source::Net(n) | Source::OneRange(n) => n,
        }
    }
}

impl Rule {
    /// The rule of one of the shapes above written as nft text, or `None`.
    pub fn parse(text: &str) -> Option<Rule> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let rule = match words.as_slice() {
            ["ip", "saddr", rest @ ..] => {
                let (negate, rest) = match rest {
                    ["!=", rest @ ..] => (true, rest),
                    _ => (false, rest),
                };
                match rest {
                    [set, verdict @ ..] if set.starts_with('@') && !negate => Rule::SaddrInSet {
                        set: set[1..].to_string(),
                        verdict: Verdict::parse_words(verdict)?,
                    },
                    ["{", range, "}", verdict @ ..] => Rule::Saddr {
                        negate,
                        source: Source::OneRange(range.parse().ok()?),
                        verdict: Verdict::parse_words(verdict)?,
                    },
                    [source, verdict @ ..] => Rule::Saddr {
                        negate,
                        source: Source::parse(source)?,
                        verdict: Verdict::parse_words(verdict)?,
                    },
                    _ => return None,
                }
            }
            ["numgen", "random", "mod", modulus, value, rest @ ..] => {
                let (modulus, value) = (modulus.parse().ok()?, value.parse().ok()?);
                match (Verdict::parse_words(rest), rest) {
                    (Some(verdict), _) => Rule::Numgen {
                        modulus,
                        value,
                        verdict,
                    },
                    (None, ["meta", ..]) => match Rule::parse(&rest.join(" "))? {
                        Rule::Dnat { proto, addr, port } => Rule::NumgenDnat {
                            modulus,
                            value,
                            proto,
                            addr,
                            port,
                        },
                        _ => return None,
                    },
                    (None, _) => return None,
                }
            }
            ["fib", "saddr", "type", "local", verdict @ ..] => Rule::FibSaddrLocal(Verdict::parse_words(verdict)?),
            ["meta", "l4proto", proto, "dnat", "ip", "to", rest @ ..] => {
                let proto = L4::parse(proto)?;
                match rest {
                    [target] => {
                        let (addr, port) = target.split_once(':')?;
                        Rule::Dnat {
                            proto,
                            addr: addr.parse().ok()?,
                            port: port.parse().ok()?,
                        }
                    }
                    ["numgen", "random", "mod", modulus, "offset", offset, "map", map] => Rule::DnatMap {
                        proto,
                        modulus: modulus.parse().ok().filter(|m| *m > 0)?,
                        offset: offset.parse().ok()?,
                        map: map.strip_prefix('@')?.to_string(),
                    },
                    _ => return None,
                }
            }
            ["update", set, "{", "ip", "saddr", "}"] if set.starts_with('@') => Rule::UpdateSaddr {
                set: set[1..].to_string(),
            },
            verdict => Rule::Verdict(Verdict::parse_words(verdict)?),
        };
        // A prefix of 0 matches everything; nft writes no comparison for it.
        if let Rule::Saddr { source, .. } = &rule
            && source.net().prefix_len() == 0
        {
            return None;
        }
        // A numgen value at or above the modulus never matches (nft refuses it).
        if let Rule::Numgen { modulus, value, .. } | Rule::NumgenDnat { modulus, value, .. } = &rule
            && (*modulus == 0 || value >= modulus)
        {
            return None;
        }
        Some(rule)
    }

    /// The body of NFTA_RULE_EXPRESSIONS: the expressions nft generates for this rule.
    pub fn expressions(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Rule::Saddr {
                negate,
                source,
                verdict,
            } => {
                ipv4_only(&mut out);
                let net = source.net();
                let addr = net.network().octets();
                let op = if *negate { CMP_NEQ } else { CMP_EQ };
                let prefix = net.prefix_len();
                if prefix % 8 == 0 {
                    let len = usize::from(prefix / 8);
                    payload(&mut out, SADDR_OFFSET, len as u32);
                    cmp(&mut out, op, &addr[..len]);
                } else {
                    payload(&mut out, SADDR_OFFSET, 4);
                    let mask = net.netmask().octets();
                    expr(&mut out, "bitwise", |d| {
                        attr(d, 1, &REG_1.to_be_bytes()); // NFTA_BITWISE_SREG
                        attr(d, 2, &REG_1.to_be_bytes()); // NFTA_BITWISE_DREG
                        attr(d, 3, &4u32.to_be_bytes()); // NFTA_BITWISE_LEN
                        data_attr(d, 4, &Data::Value(mask.to_vec())); // NFTA_BITWISE_MASK
                        data_attr(d, 5, &Data::Value(vec![0; 4])); // NFTA_BITWISE_XOR
                    });
                    cmp(&mut out, op, &addr);
                }
                immediate_verdict(&mut out, verdict);
            }
            Rule::SaddrInSet { set, verdict } => {
                ipv4_only(&mut out);
                payload(&mut out, SADDR_OFFSET, 4);
                expr(&mut out, "lookup", |d| {
                    attr(d, 1, &cstr(set)); // NFTA_LOOKUP_SET
                    attr(d, 2, &REG_1.to_be_bytes()); // NFTA_LOOKUP_SREG
                });
                immediate_verdict(&mut out, verdict);
            }
            Rule::Numgen {
                modulus,
                value,
                verdict,
            } => {
                numgen_is(&mut out, *modulus, *value);
                immediate_verdict(&mut out, verdict);
            }
            Rule::NumgenDnat {
                modulus,
                value,
                proto,
                addr,
                port,
            } => {
                numgen_is(&mut out, *modulus, *value);
                dnat(&mut out, *proto, *addr, *port);
            }
            Rule::DnatMap {
                proto,
                modulus,
                offset,
                map,
            } => {
                meta_load(&mut out, META_L4PROTO);
                cmp(&mut out, CMP_EQ, &[proto.number()]);
                numgen(&mut out, *modulus, *offset);
                expr(&mut out, "lookup", |d| {
                    attr(d, 2, &REG_1.to_be_bytes()); // NFTA_LOOKUP_SREG
                    attr(d, 3, &REG_1.to_be_bytes()); // NFTA_LOOKUP_DREG: the address, the port after it
                    attr(d, 1, &cstr(map)); // NFTA_LOOKUP_SET
                });
                expr(&mut out, "nat", |d| {
                    attr(d, 1, &1u32.to_be_bytes()); // NFTA_NAT_TYPE: NFT_NAT_DNAT
                    attr(d, 2, &2u32.to_be_bytes()); // NFTA_NAT_FAMILY: NFPROTO_IPV4
                    attr(d, 3, &REG_1.to_be_bytes()); // NFTA_NAT_REG_ADDR_MIN
                    attr(d, 5, &REG32_01.to_be_bytes()); // NFTA_NAT_REG_PROTO_MIN
                });
            }
            Rule::FibSaddrLocal(verdict) => {
                expr(&mut out, "fib", |d| {
                    attr(d, 1, &REG_1.to_be_bytes()); // NFTA_FIB_DREG
                    attr(d, 2, &3u32.to_be_bytes()); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
                    attr(d, 3, &1u32.to_be_bytes()); // NFTA_FIB_FLAGS: NFTA_FIB_F_SADDR
                });
                cmp(&mut out, CMP_EQ, &2u32.to_ne_bytes()); // RTN_LOCAL
                immediate_verdict(&mut out, verdict);
            }
            Rule::Dnat { proto, addr, port } => dnat(&mut out, *proto, *addr, *port),
            Rule::UpdateSaddr { set } => {
                ipv4_only(&mut out);
                payload(&mut out, SADDR_OFFSET, 4);
                expr(&mut out, "dynset", |d| {
                    attr(d, 4, &REG_1.to_be_bytes()); // NFTA_DYNSET_SREG_KEY
                    attr(d, 3, &1u32.to_be_bytes()); // NFTA_DYNSET_OP: NFT_DYNSET_OP_UPDATE
                    attr(d, 1, &cstr(set)); // NFTA_DYNSET_SET_NAME
                });
            }
            Rule::Verdict(verdict) => immediate_verdict(&mut out, verdict),
        }
        out
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Verdict::Drop => write!(f, "drop"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Source::Host(a) => write!(f, "{a}"),
            Source::Net(n) => write!(f, "{n}"),
            Source::OneRange(n) => write!(f, "{{ {n} }}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Rule::Saddr {
                negate,
                source,
                verdict,
            } => {
                let not = if *negate { "!= " } else { "" };
                write!(f, "ip saddr {not}{source} {verdict}")
            }
            Rule::SaddrInSet { set, verdict } => write!(f, "ip saddr @{set} {verdict}"),
            Rule::Numgen {
                modulus,
                value,
                verdict,
            } => write!(f, "numgen random mod {modulus} {value} {verdict}"),
            Rule::FibSaddrLocal(verdict) => write!(f, "fib saddr type local {verdict}"),
            Rule::Dnat { proto, addr, port } => write!(f, "meta l4proto {} dnat ip to {addr}:{port}", proto.name()),
            Rule::DnatMap {
                proto,
                modulus,
                offset,
                map,
            } => write!(
                f,
                "meta l4proto {} dnat ip to numgen random mod {modulus} offset {offset} map @{map}",
                proto.name()
            ),
            Rule::NumgenDnat {
                modulus,
                value,
                proto,
                addr,
                port,
            } => write!(
                f,
                "numgen random mod {modulus} {value} meta l4proto {} dnat ip to {addr}:{port}",
                proto.name()
            ),
            Rule::UpdateSaddr { set } => write!(f, "update @{set} {{ ip saddr }}"),
            Rule::Verdict(verdict) => write!(f, "{verdict}"),
        }
    }
}

/// A set declaration as the proxy writes it (`type ipv4_addr; flags dynamic,timeout; timeout 60s;`), or `None`
/// for anything else.
pub fn parse_set(name: &str, decl: &str) -> Option<SetSpec> {
    let mut spec = SetSpec {
        name: name.to_string(),
        flags: 0,
        key_type: 0,
        key_len: 0,
        timeout_ms: None,
    };
    for part in decl.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["type", "ipv4_addr"] => (spec.key_type, spec.key_len) = (7, 4),
            ["flags", flags] => {
                for flag in flags.split(',') {
                    spec.flags |= match flag {
                        "timeout" => 0x10, // NFT_SET_TIMEOUT
                        "dynamic" => 0x20, // NFT_SET_EVAL
                        _ => return None,
                    };
                }
            }
            ["timeout", t] => spec.timeout_ms = Some(t.strip_suffix('s')?.parse::<u64>().ok()? * 1000),
            _ => return None,
        }
    }
    (spec.key_type != 0).then_some(spec)
}

/// One field of a concatenated key or datum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Addr(Ipv4Addr),
    Proto(L4),
    Port(u16),
}

/// A concatenation (`10.96.0.20 . tcp . 80`) as the kernel stores it: every field in its own 32-bit register
/// (an address, a protocol number, a port in network order), zero-padded.
pub fn concat(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * fields.len());
    for field in fields {
        match field {
            Field::Addr(addr) => out.extend_from_slice(&addr.octets()),
            Field::Proto(proto) => out.extend_from_slice(&[proto.number(), 0, 0, 0]),
            Field::Port(port) => {
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
        }
    }
    out
}

/// A concatenated map key written as nft text (`10.96.0.20 . tcp . 80`, `tcp . 30080`), as [`concat`] stores it.
pub fn concat_key(text: &str) -> Option<Vec<u8>> {
    let fields = text
        .split(" . ")
        .map(str::trim)
        .map(|field| {
            if let Ok(addr) = field.parse() {
                Some(Field::Addr(addr))
            } else if let Some(proto) = L4::parse(field) {
                Some(Field::Proto(proto))
            } else {
                field.parse().ok().map(Field::Port)
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(concat(&fields))
}

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
/// The second 32-bit word of register 1, where the second field of a concatenation lands.
const REG32_01: u32 = 9;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
/// `ip saddr`: network header, bytes 12..16.
const SADDR_OFFSET: u32 = 12;

/// One NFTA_LIST_ELEM holding an expression: its name and its attributes.
fn expr(out: &mut Vec<u8>, name: &str, fill: impl FnOnce(&mut Vec<u8>)) {
    nested(out, 1, |e| {
        attr(e, 1, &cstr(name)); // NFTA_EXPR_NAME
        nested(e, 2, fill); // NFTA_EXPR_DATA
    });
}

fn meta_load(out: &mut Vec<u8>, key: u32) {
    expr(out, "meta", |d| {
        attr(d, 2, &key.to_be_bytes()); // NFTA_META_KEY
        attr(d, 1, &REG_1.to_be_bytes()); // NFTA_META_DREG
    });
}

fn cmp(out: &mut Vec<u8>, op: u32, value: &[u8]) {
    expr(out, "cmp", |d| {
        attr(d, 1, &REG_1.to_be_bytes()); // NFTA_CMP_SREG
        attr(d, 2, &op.to_be_bytes()); // NFTA_CMP_OP
        data_attr(d, 3, &Data::Value(value.to_vec())); // NFTA_CMP_DATA
    });
}

/// `meta nfproto ipv4`: in an inet table, an IPv4 header field is only read from IPv4 packets.
fn ipv4_only(out: &mut Vec<u8>) {
    meta_load(out, META_NFPROTO);
    cmp(out, CMP_EQ, &[2]); // NFPROTO_IPV4
}

fn payload(out: &mut Vec<u8>, offset: u32, len: u32) {
    expr(out, "payload", |d| {
        attr(d, 1, &REG_1.to_be_bytes()); // NFTA_PAYLOAD_DREG
        attr(d, 2, &1u32.to_be_bytes()); // NFTA_PAYLOAD_BASE: NFT_PAYLOAD_NETWORK_HEADER
        attr(d, 3, &offset.to_be_bytes()); // NFTA_PAYLOAD_OFFSET
        attr(d, 4, &len.to_be_bytes()); // NFTA_PAYLOAD_LEN
    });
}

/// `numgen random mod MODULUS offset OFFSET` into register 1.
fn numgen(out: &mut Vec<u8>, modulus: u32, offset: u32) {
    expr(out, "numgen", |d| {
        attr(d, 1, &REG_1.to_be_bytes()); // NFTA_NG_DREG
        attr(d, 2, &modulus.to_be_bytes()); // NFTA_NG_MODULUS
        attr(d, 3, &1u32.to_be_bytes()); // NFTA_NG_TYPE: NFT_NG_RANDOM
        attr(d, 4, &offset.to_be_bytes()); // NFTA_NG_OFFSET
    });
}

/// `numgen random mod MODULUS VALUE`
fn numgen_is(out: &mut Vec<u8>, modulus: u32, value: u32) {
    numgen(out, modulus, 0);
    cmp(out, CMP_EQ, &value.to_ne_bytes());
}

/// `meta l4proto PROTO dnat ip to ADDR:PORT`
fn dnat(out: &mut Vec<u8>, proto: L4, addr: Ipv4Addr, port: u16) {
    meta_load(out, META_L4PROTO);
    cmp(out, CMP_EQ, &[proto.number()]);
    immediate_value(out, REG_1, &addr.octets());
    immediate_value(out, REG_2, &port.to_be_bytes());
    expr(out, "nat", |d| {
        attr(d, 1, &1u32.to_be_bytes()); // NFTA_NAT_TYPE: NFT_NAT_DNAT
        attr(d, 2, &2u32.to_be_bytes()); // NFTA_NAT_FAMILY: NFPROTO_IPV4
        attr(d, 3, &REG_1.to_be_bytes()); // NFTA_NAT_REG_ADDR_MIN
        attr(d, 5, &REG_2.to_be_bytes()); // NFTA_NAT_REG_PROTO_MIN
        attr(d, 7, &2u32.to_be_bytes()); // NFTA_NAT_FLAGS: NF_NAT_RANGE_PROTO_SPECIFIED
    });
}

fn immediate_value(out: &mut Vec<u8>, reg: u32, value: &[u8]) {
    expr(out, "immediate", |d| {
        attr(d, 1, &reg.to_be_bytes()); // NFTA_IMMEDIATE_DREG
        data_attr(d, 2, &Data::Value(value.to_vec())); // NFTA_IMMEDIATE_DATA
    });
}

fn immediate_verdict(out: &mut Vec<u8>, verdict: &Verdict) {
    expr(out, "immediate", |d| {
        attr(d, 1, &REG_VERDICT.to_be_bytes()); // NFTA_IMMEDIATE_DREG
        data_attr(d, 2, &verdict.data()); // NFTA_IMMEDIATE_DATA
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPES: &[&str] = &[
        "ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "ip saddr 10.244.0.0/16 goto svc-X",
        "ip saddr 10.244.1.5 jump mark-for-masquerade",
        "ip saddr != 10.240.0.0/12 jump mark-for-masquerade",
        "numgen random mod 2 0 goto ep-a",
        "goto ep-a",
        "jump mark-for-masquerade",
        "drop",
        "meta l4proto tcp dnat ip to 10.244.1.5:8080",
        "meta l4proto udp dnat ip to 10.244.1.5:53",
        "ip saddr @aff-60-x goto ep-a",
        "update @aff-60-x { ip saddr }",
        "fib saddr type local jump mark-for-masquerade",
        "fib saddr type local goto svc-X",
        "ip saddr != { 172.18.0.0/24 } drop",
        "numgen random mod 3 1 meta l4proto udp dnat ip to 10.244.1.5:53",
        "meta l4proto tcp dnat ip to numgen random mod 3 offset 8 map @endpoints-tcp",
    ];

    #[test]
    fn every_shape_round_trips_through_text() {
        for text in SHAPES {
            let rule = Rule::parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(rule.to_string(), *text);
            assert_eq!(rule.expressions().len() % 4, 0);
        }
    }

    #[test]
    fn other_rules_do_not_parse() {
        for text in [
            "ip saddr != { 172.18.0.0/24, 10.0.0.0/8 } drop",
            "ip6 saddr ::1 drop",
            "ip saddr 0.0.0.0/0 drop",
            "numgen random mod 2 2 goto x",
            "counter",
            "goto",
            "meta l4proto icmp dnat ip to 1.2.3.4:5",
            "numgen random mod 2 2 meta l4proto tcp dnat ip to 10.0.0.1:80",
            "meta l4proto tcp dnat ip to numgen random mod 0 offset 8 map @endpoints-tcp",
        ] {
            assert_eq!(Rule::parse(text), None, "{text}");
        }
    }

    #[test]
    fn byte_aligned_prefixes_compare_only_their_bytes() {
        let rule = Rule::parse("ip saddr 10.244.0.0/16 goto c").unwrap().expressions();
        assert!(!rule.windows(8).any(|w| w == b"bitwise\0"));
        let rule = Rule::parse("ip saddr 10.244.16.0/20 goto c").unwrap().expressions();
        assert!(rule.windows(8).any(|w| w == b"bitwise\0"));
    }

    #[test]
    fn keys_and_sets() {
        assert_eq!(
            concat_key("10.96.0.20 . tcp . 80").unwrap(),
            [10, 96, 0, 20, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(concat_key("udp . 30080").unwrap(), [17, 0, 0, 0, 0x75, 0x80, 0, 0]);
        assert_eq!(concat_key("x . 1"), None);
        let set = parse_set("aff", "type ipv4_addr; flags dynamic,timeout; timeout 60s;").unwrap();
        assert_eq!(
            (set.flags, set.key_type, set.key_len, set.timeout_ms),
            (0x30, 7, 4, Some(60_000))
        );
        assert_eq!(parse_set("s", "type ipv4_addr; flags interval;"), None);
    }
}
