//! The proxy's desired nftables state as data, and the text that gets the kernel there: a whole table at start,
//! afterwards one transaction holding only what changed. The state is kept per Service, so a Service the
//! planner did not re-plan is shared with the previous state and skipped by the diff at the cost of a pointer
//! comparison.

use imbl::ordmap::DiffItem;
use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::fmt::{self, Write};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::sync::{Arc, LazyLock};
use weft_netlink::nft_rules::{Field, L4, concat};

pub const TABLE: &str = "inet weft";

/// Maps the skeleton declares and the planner fills.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// The set of `endpoint . endpoint` pairs: a connection DNATed back to its own source is masqueraded.
pub const HAIRPIN: &str = "hairpin";

/// The maps of `address . port` endpoints by number: each Service port's endpoints take a block of numbers,
/// and its chain DNATs to `numgen random mod COUNT offset FIRST` of one map. A changed endpoint is a changed
/// element: no rule changes, so the kernel has no chains to validate. One map per protocol (nft types the
/// port by it) and shard: the kernel checks every element added to a map against every rule that looks it
/// up, which for one map of 50,000 endpoints and 10,000 rules took 10 s from empty.
pub const ENDPOINT_SHARDS: u32 = 64;

const PROTOCOLS: [L4; 3] = [L4::Tcp, L4::Udp, L4::Sctp];

/// The endpoints map of `proto` numbered `shard` (modulo [`ENDPOINT_SHARDS`]).
pub fn endpoints_map(proto: L4, shard: u32) -> &'static str {
    static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
        let names = PROTOCOLS
            .iter()
            .flat_map(|p| (0..ENDPOINT_SHARDS).map(move |s| format!("endpoints-{}-{s}", p.name())));
        names.collect()
    });
    let index = PROTOCOLS.iter().position(|p| *p == proto).unwrap_or_default();
    &NAMES[index * ENDPOINT_SHARDS as usize + (shard % ENDPOINT_SHARDS) as usize]
}

/// [`SKELETON`] and the endpoints maps.
fn skeleton() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let mut out = SKELETON.trim_end().trim_end_matches('}').to_string();
        for proto in PROTOCOLS {
            for shard in 0..ENDPOINT_SHARDS {
                let map = endpoints_map(proto, shard);
                let _ = writeln!(
                    out,
                    "\tmap {map} {{ typeof numgen random mod 1 : ip daddr . {} dport; }}",
                    proto.name()
                );
            }
        }
        out.push_str("}\n");
        out
    });
    &TEXT
}

/// The fixed part: hooks, the lookup maps and the helper chains. Every packet costs the same few rules and one
/// or two map lookups, however many Services exist. NodePorts answer on every local address, 127.0.0.1 too (the
/// agent sets `route_localnet` for that); packets from elsewhere to 127.0.0.0/8 that were not DNATed are
/// dropped, so that setting opens nothing else (kube-proxy's guard for CVE-2020-8558). A pod that reaches
/// itself through a Service is masqueraded after the DNAT (`@hairpin`), or its reply would not come back
/// through the node. The endpoints maps ([`endpoints_map`]) are declared after these.
pub const SKELETON: &str = "\
table inet weft {
\tmap service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
\tmap service-nodeports { type inet_proto . inet_service : verdict; }
\tmap no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
\tmap no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
\tset hairpin { type ipv4_addr . ipv4_addr; }
\tchain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
\tchain nat-output { type nat hook output priority -100; policy accept; jump services; }
\tchain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
\tchain filter-input { type filter hook input priority -110; policy accept; ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct status & dnat == 0 drop; ct state new jump endpoints-check; ct state new jump nodeport-endpoints-check; }
\tchain filter-forward { type filter hook forward priority -110; policy accept; ct state new jump endpoints-check; }
\tchain filter-output { type filter hook output priority -110; policy accept; ct state new jump endpoints-check; ct state new jump nodeport-endpoints-check; }
\tchain services { ip daddr . meta l4proto . th dport vmap @service-ips; fib daddr type local meta l4proto . th dport vmap @service-nodeports; }
\tchain endpoints-check { ip daddr . meta l4proto . th dport vmap @no-endpoint-services; }
\tchain nodeport-endpoints-check { fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports; }
\tchain mark-for-masquerade { meta mark set meta mark | 0x4000; }
\tchain masquerading { ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade; meta mark & 0x4000 == 0 return; meta mark set meta mark ^ 0x4000; masquerade fully-random; }
\tchain reject-chain { reject; }
}
";

/// A map element's verdict (`goto svc-…`), none for a set's element.
pub type Verdict = Option<Arc<str>>;

/// The elements of one map or set: key → the Services claiming it.
pub type Elements = imbl::OrdMap<Key, Owners>;

/// Each Service's part by `namespace/name`: a persistent map, so a ruleset shares it with the planner and with
/// the ruleset before (a plan costs the Services it re-planned, not a copy of the map).
pub type Services = imbl::OrdMap<Arc<str>, Arc<ServiceRules>>;

/// The key of an element of one of the skeleton's maps or sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `address . protocol . port`: a ClusterIP, external IP or load-balancer IP and a Service port.
    Address(Ipv4Addr, L4, u16),
    /// `protocol . port`: a NodePort, on every local address.
    NodePort(L4, u16),
    /// `endpoint . endpoint`: a connection DNATed back to where it comes from.
    Hairpin(Ipv4Addr),
    /// An endpoint's number in an endpoints map.
    Slot(u32),
}

impl Key {
    /// The key as the kernel stores it.
    pub fn bytes(&self) -> Vec<u8> {
        match *self {
            Key::Address(addr, proto, port) => concat(&[Field::Addr(addr), Field::Proto(proto), Field::Port(port)]),
            Key::NodePort(proto, port) => concat(&[Field::Proto(proto), Field::Port(port)]),
            Key::Hairpin(addr) => concat(&[Field::Addr(addr), Field::Addr(addr)]),
            // numgen's result: a 32-bit integer in host order.
            Key::Slot(n) => n.to_ne_bytes().to_vec(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Key::Address(addr, proto, port) => write!(f, "{addr} . {} . {port}", proto.name()),
            Key::NodePort(proto, port) => write!(f, "{} . {port}", proto.name()),
            Key::Hairpin(addr) => write!(f, "{addr} . {addr}"),
            Key::Slot(n) => write!(f, "{n}"),
        }
    }
}

/// What one Service contributes to the table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRules {
    /// Chains of its ports (and of its endpoints, with session affinity): name and rules, sorted by name (a
    /// list: a Service has a few, and a map per Service would cost more than they do).
    pub chains: Vec<(String, Vec<String>)>,
    /// Session-affinity sets: name → declaration.
    pub sets: BTreeMap<String, String>,
    /// Elements of the skeleton's maps and sets: map, key, and for maps the verdict.
    pub elements: Vec<(&'static str, Key, Verdict)>,
    /// UDP endpoints in use (address, port).
    pub udp_endpoints: Vec<(Ipv4Addr, u16)>,
    /// Elements of the endpoints maps: map, number, endpoint. Numbers are the Service's own (the planner hands
    /// out blocks), so unlike `elements` no other Service claims them.
    pub endpoints: Vec<(&'static str, u32, Ipv4Addr, u16)>,
    /// Not in the table: the health-check node port this node answers for the Service
    /// (`externalTrafficPolicy: Local`) and the number of its ready endpoints here.
    pub health_check: Option<(u16, usize)>,
}

impl ServiceRules {
    /// Adds a chain, or replaces the one of that name.
    pub fn add_chain(&mut self, name: String, rules: Vec<String>) {
        match self.chains.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(at) => self.chains[at].1 = rules,
            Err(at) => self.chains.insert(at, (name, rules)),
        }
    }

    pub fn element(&mut self, map: &'static str, key: Key, verdict: Verdict) {
        self.elements.push((map, key, verdict));
    }

    /// Gives back what the lists reserved while they grew: a planner holds one of these per Service.
    pub fn shrink_to_fit(&mut self) {
        self.chains.shrink_to_fit();
        for (_, rules) in &mut self.chains {
            rules.shrink_to_fit();
        }
        self.elements.shrink_to_fit();
        self.udp_endpoints.shrink_to_fit();
        self.endpoints.shrink_to_fit();
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ruleset {
    /// Per Service (`namespace/name`), shared with the planner's memory of the Services that did not change.
    pub services: Services,
    /// Every element of the skeleton's maps and sets: map → key → the Services claiming it and so its verdict
    /// (should two claim one key, the same external IP and port, the last by name has it). Persistent maps
    /// shared with the planner's claims: a ruleset costs what changed since the last one, not a copy of every
    /// element.
    pub elements: BTreeMap<&'static str, Elements>,
    /// UDP endpoints in use (address, port): when one goes, its conntrack entries go too.
    pub udp_endpoints: BTreeSet<(Ipv4Addr, u16)>,
}

impl Ruleset {
    /// The ruleset of `services`, whose elements `claims` holds.
    pub fn with_claims(services: Services, claims: &Claims) -> Ruleset {
        Ruleset {
            services,
            elements: claims.elements.clone(),
            udp_endpoints: claims.udp.keys().copied().collect(),
        }
    }

    /// The elements of `map` with their verdicts, in key order.
    pub fn elements<'a>(&'a self, map: &str) -> impl Iterator<Item = (&'a Key, &'a Verdict)> + 'a {
        let elements = self.elements.get(map).into_iter().flat_map(|e| e.iter());
        elements.map(|(key, owners)| (key, owners.verdict()))
    }

    /// Every generated chain: name and rules.
    pub fn chains(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.services
            .values()
            .flat_map(|s| s.chains.iter().map(|(name, rules)| (name, rules)))
    }

    pub fn chain(&self, name: &str) -> Option<&Vec<String>> {
        self.services
            .values()
            .find_map(|s| s.chains.iter().find(|(n, _)| n == name).map(|(_, rules)| rules))
    }

    /// Every session-affinity set: name and declaration.
    pub fn sets(&self) -> impl Iterator<Item = (&String, &String)> {
        self.services.values().flat_map(|s| s.sets.iter())
    }

    /// The verdict of a map element written as nft text (`10.96.0.20 . tcp . 80`).
    pub fn verdict(&self, map: &str, key: &str) -> Option<&str> {
        let (_, verdict) = self.elements(map).find(|(k, _)| k.to_string() == key)?;
        verdict.as_deref()
    }

    /// The whole table, replacing whatever is there in the same transaction (no moment without rules).
    pub fn full(&self) -> String {
        let mut out = Vec::new();
        // Writing into memory does not fail, and the text is UTF-8 (it is written from strings).
        let _ = self.write_full(&mut out);
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// [`Ruleset::full`] written to `out` as it is made (the applier streams it into `nft`: at 10,000 Services
    /// it is megabytes of text, not worth holding whole); returns its size in bytes.
    pub fn write_full(&self, out: &mut dyn io::Write) -> io::Result<usize> {
        let mut out = Counted { inner: out, bytes: 0 };
        write!(out, "add table {TABLE}\ndelete table {TABLE}\n{}", skeleton())?;
        for (name, decl) in self.sets() {
            writeln!(out, "add set {TABLE} {name} {{ {decl} }}")?;
        }
        for (name, _) in self.chains() {
            writeln!(out, "add chain {TABLE} {name}")?;
        }
        for (name, rules) in self.chains() {
            for rule in rules {
                writeln!(out, "add rule {TABLE} {name} {rule}")?;
            }
        }
        // Statements of ELEMENTS_PER_STATEMENT elements each, written as they are gathered: a list of every
        // element first would cost as much as the text.
        let mut statements = |map: &str, elements: &mut dyn Iterator<Item = (Key, Option<Value>)>| -> io::Result<()> {
            loop {
                let chunk: Vec<_> = (&mut *elements).take(ELEMENTS_PER_STATEMENT).collect();
                if chunk.is_empty() {
                    return Ok(());
                }
                writeln!(out, "{}", Change::AddElements { map, elements: chunk })?;
            }
        };
        for map in self.elements.keys() {
            statements(
                map,
                &mut self.elements(map).map(|(k, v)| (*k, v.as_deref().map(Value::Verdict))),
            )?;
        }
        let mut endpoints: BTreeMap<&str, Vec<(u32, Ipv4Addr, u16)>> = BTreeMap::new();
        for (map, slot, addr, port) in self.services.values().flat_map(|s| s.endpoints.iter()) {
            endpoints.entry(map).or_default().push((*slot, *addr, *port));
        }
        for (map, slots) in endpoints {
            let mut elements =
                (slots.into_iter()).map(|(slot, addr, port)| (Key::Slot(slot), Some(Value::Target(addr, port))));
            statements(map, &mut elements)?;
        }
        Ok(out.bytes)
    }

    /// One transaction from `self` (what the kernel has) to `new`; `None` when nothing changed. New chains are
    /// declared before anything refers to them, and old ones are deleted only after nothing does.
    pub fn diff(&self, new: &Ruleset) -> Option<String> {
        let changes = self.changes(new);
        (!changes.is_empty()).then(|| script(&changes))
    }

    /// The steps of [`Ruleset::diff`] as data, in order (the applier sends them over netlink when it can).
    pub fn changes<'a>(&'a self, new: &'a Ruleset) -> Vec<Change<'a>> {
        // Every comparison walks two sorted maps side by side: at 10,000 Services a lookup per name costs more
        // than the rest of the transaction.
        let mut out = Vec::new();
        let (mut chains, mut rules, mut dropped, mut dropped_sets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Per map: keys whose element goes (or changes), and elements that come (or change).
        let mut gone: BTreeMap<&str, Vec<Key>> = BTreeMap::new();
        let mut added: BTreeMap<&str, Vec<(Key, Option<Value>)>> = BTreeMap::new();
        static NONE: ServiceRules = ServiceRules {
            chains: Vec::new(),
            sets: BTreeMap::new(),
            elements: Vec::new(),
            udp_endpoints: Vec::new(),
            endpoints: Vec::new(),
            health_check: None,
        };
        for (_, old, now) in merge(&self.services, &new.services) {
            if let (Some(old), Some(now)) = (old, now)
                && (Arc::ptr_eq(old, now) || old == now)
            {
                continue;
            }
            let (old, now) = (old.map_or(&NONE, |s| &**s), now.map_or(&NONE, |s| &**s));
            // A set's name carries its declaration (the affinity timeout), so a set is only ever added or deleted.
            for (name, old, now) in merge(&old.sets, &now.sets) {
                match (old, now) {
                    (None, Some(decl)) => out.push(Change::AddSet { name, decl }),
                    (Some(_), None) => dropped_sets.push(Change::DeleteSet(name)),
                    _ => {}
                }
            }
            let chains_of = |s: &'a ServiceRules| s.chains.iter().map(|(name, rules)| (name, rules));
            for (name, old, now) in merge(chains_of(old), chains_of(now)) {
                match (old, now) {
                    (Some(old), Some(now)) if old == now => continue,
                    (Some(_), Some(_)) => rules.push(Change::FlushChain(name)),
                    (None, Some(_)) => chains.push(Change::AddChain(name)),
                    (Some(_), None) => dropped.push(name.as_str()),
                    (None, None) => {}
                }
                rules.extend(
                    now.iter()
                        .flat_map(|r| r.iter())
                        .map(|rule| Change::AddRule { chain: name, rule }),
                );
            }
            let slots = |s: &'a ServiceRules| -> BTreeMap<Key, (&'static str, Value<'a>)> {
                let slot = |(map, n, addr, port): &(&'static str, u32, Ipv4Addr, u16)| {
                    (Key::Slot(*n), (*map, Value::Target(*addr, *port)))
                };
                s.endpoints.iter().map(slot).collect()
            };
            for (key, old, now) in merge(&slots(old), &slots(now)) {
                if old == now {
                    continue;
                }
                if let Some((map, _)) = old {
                    gone.entry(map).or_default().push(*key);
                }
                if let Some((map, value)) = now {
                    added.entry(map).or_default().push((*key, Some(*value)));
                }
            }
        }
        out.append(&mut chains);
        out.append(&mut rules);
        static EMPTY: LazyLock<Elements> = LazyLock::new(Elements::new);
        let maps: BTreeSet<&str> = self.elements.keys().chain(new.elements.keys()).copied().collect();
        for map in maps {
            let old = self.elements.get(map).unwrap_or(&EMPTY);
            let now = new.elements.get(map).unwrap_or(&EMPTY);
            // The diff of two versions of one persistent map skips what they share.
            for item in old.diff(now) {
                let (key, old, now) = match item {
                    DiffItem::Add(key, now) => (key, None, Some(now.verdict())),
                    DiffItem::Update { old, new } => (old.0, Some(old.1.verdict()), Some(new.1.verdict())),
                    DiffItem::Remove(key, old) => (key, Some(old.verdict()), None),
                };
                if old == now {
                    continue;
                }
                if old.is_some() {
                    gone.entry(map).or_default().push(*key);
                }
                if let Some(verdict) = now {
                    let value = verdict.as_deref().map(Value::Verdict);
                    added.entry(map).or_default().push((*key, value));
                }
            }
        }
        for (map, keys) in &gone {
            for keys in keys.chunks(ELEMENTS_PER_STATEMENT) {
                out.push(Change::DeleteElements {
                    map,
                    keys: keys.to_vec(),
                });
            }
        }
        for (map, elements) in &added {
            for elements in elements.chunks(ELEMENTS_PER_STATEMENT) {
                out.push(Change::AddElements {
                    map,
                    elements: elements.to_vec(),
                });
            }
        }
        out.extend(dropped.iter().map(|name| Change::FlushChain(name)));
        out.extend(dropped.iter().map(|name| Change::DeleteChain(name)));
        out.append(&mut dropped_sets);
        out
    }

    /// Chains, rules and set or map elements (for logs and benchmarks).
    pub fn counts(&self) -> (usize, usize, usize) {
        let (mut chains, mut rules) = (0, 0);
        for (_, r) in self.chains() {
            chains += 1;
            rules += r.len();
        }
        let endpoints: usize = self.services.values().map(|s| s.endpoints.len()).sum();
        let elements: usize = self.elements.values().map(Elements::len).sum();
        (chains, rules, elements + endpoints)
    }
}

/// The skeleton's elements of many Services, kept as Services come, change and go (so a change costs the same at
/// any number of Services): each key goes to the last Service by name that claims it, as two Services may claim
/// the same external IP and port.
#[derive(Debug, Default)]
pub struct Claims {
    elements: BTreeMap<&'static str, Elements>,
    /// UDP endpoints and how many claims each has.
    udp: BTreeMap<(Ipv4Addr, u16), usize>,
}

/// The Services claiming one key with their verdicts, by name (a Service's own claims in its order).
#[derive(Clone, Debug, PartialEq)]
pub enum Owners {
    One(Arc<str>, Verdict),
    Many(Vec<(Arc<str>, Verdict)>),
}

impl Claims {
    pub fn add(&mut self, service: &Arc<str>, rules: &ServiceRules) {
        for (map, key, verdict) in &rules.elements {
            let claim = (Arc::clone(service), verdict.clone());
            let elements = self.elements.entry(map).or_default();
            match elements.get_mut(key) {
                None => {
                    elements.insert(*key, Owners::One(claim.0, claim.1));
                }
                Some(owners) => {
                    let mut list = match std::mem::replace(owners, Owners::Many(Vec::new())) {
                        Owners::One(name, verdict) => vec![(name, verdict)],
                        Owners::Many(list) => list,
                    };
                    let at = list.partition_point(|(name, _)| **name <= **service);
                    list.insert(at, claim);
                    *owners = Owners::Many(list);
                }
            }
        }
        for endpoint in &rules.udp_endpoints {
            *self.udp.entry(*endpoint).or_default() += 1;
        }
    }

    /// Takes back what [`Claims::add`] of the same `rules` added.
    pub fn remove(&mut self, service: &str, rules: &ServiceRules) {
        for (map, key, _) in &rules.elements {
            let Some(elements) = self.elements.get_mut(map) else {
                continue;
            };
            let Some(owners) = elements.get_mut(key) else {
                continue;
            };
            let left = match owners {
                Owners::One(name, _) => **name != *service,
                Owners::Many(list) => {
                    list.retain(|(name, _)| **name != *service);
                    match &list[..] {
                        [] => false,
                        // One claim left is `One`, as if it had been the only one (rulesets compare equal).
                        [(name, verdict)] => {
                            *owners = Owners::One(name.clone(), verdict.clone());
                            true
                        }
                        _ => true,
                    }
                }
            };
            if !left {
                elements.remove(key);
                if elements.is_empty() {
                    self.elements.remove(map);
                }
            }
        }
        for endpoint in &rules.udp_endpoints {
            if let btree_map::Entry::Occupied(mut e) = self.udp.entry(*endpoint) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }
}

impl Owners {
    /// The verdict of the last claim by name: the element's.
    pub fn verdict(&self) -> &Verdict {
        match self {
            Owners::One(_, verdict) => verdict,
            Owners::Many(list) => list.last().map_or(&None, |(_, verdict)| verdict),
        }
    }
}

/// The keys of two sorted maps (or lists sorted by key) in order, each with its value on either side.
fn merge<'a, K: Ord + 'a, V: 'a>(
    old: impl IntoIterator<Item = (&'a K, &'a V)>,
    new: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> impl Iterator<Item = (&'a K, Option<&'a V>, Option<&'a V>)> {
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    std::iter::from_fn(move || {
        let order = match (old.peek(), new.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        Some(match order {
            std::cmp::Ordering::Less => old.next().map(|(k, v)| (k, Some(v), None))?,
            std::cmp::Ordering::Greater => new.next().map(|(k, v)| (k, None, Some(v)))?,
            std::cmp::Ordering::Equal => {
                let (k, a) = old.next()?;
                let (_, b) = new.next()?;
                (k, Some(a), Some(b))
            }
        })
    })
}

/// The value of a map element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// `goto CHAIN`
    Verdict(&'a str),
    /// `ADDRESS . PORT`
    Target(Ipv4Addr, u16),
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Value::Verdict(v) => write!(f, "{v}"),
            Value::Target(addr, port) => write!(f, "{addr} . {port}"),
        }
    }
}

/// One step of a transaction on [`TABLE`]: an nft statement, as data.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<'a> {
    /// A set and its declaration (`type ipv4_addr; ...`).
    AddSet {
        name: &'a str,
        decl: &'a str,
    },
    AddChain(&'a str),
    /// Removes every rule of the chain.
    FlushChain(&'a str),
    /// Appends one rule (nft text) to a chain.
    AddRule {
        chain: &'a str,
        rule: &'a str,
    },
    /// Set or map elements by key.
    DeleteElements {
        map: &'a str,
        keys: Vec<Key>,
    },
    /// Set elements, or map elements with their values.
    AddElements {
        map: &'a str,
        elements: Vec<(Key, Option<Value<'a>>)>,
    },
    DeleteChain(&'a str),
    DeleteSet(&'a str),
}

impl fmt::Display for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Change::AddSet { name, decl } => write!(f, "add set {TABLE} {name} {{ {decl} }}"),
            Change::AddChain(name) => write!(f, "add chain {TABLE} {name}"),
            Change::FlushChain(name) => write!(f, "flush chain {TABLE} {name}"),
            Change::AddRule { chain, rule } => write!(f, "add rule {TABLE} {chain} {rule}"),
            Change::DeleteElements { map, keys } => {
                let keys: Vec<String> = keys.iter().map(Key::to_string).collect();
                write!(f, "delete element {TABLE} {map} {{ {} }}", keys.join(", "))
            }
            Change::AddElements { map, elements } => {
                let elements: Vec<String> = elements
                    .iter()
                    .map(|(k, v)| match v {
                        Some(v) => format!("{k} : {v}"),
                        None => k.to_string(),
                    })
                    .collect();
                write!(f, "add element {TABLE} {map} {{ {} }}", elements.join(", "))
            }
            Change::DeleteChain(name) => write!(f, "delete chain {TABLE} {name}"),
            Change::DeleteSet(name) => write!(f, "delete set {TABLE} {name}"),
        }
    }
}

/// An `io::Write` that counts what it passes on.
struct Counted<'a> {
    inner: &'a mut dyn io::Write,
    bytes: usize,
}

impl io::Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The nft script of `changes`, one statement a line.
pub fn script(changes: &[Change]) -> String {
    let mut out = String::new();
    for change in changes {
        let _ = writeln!(out, "{change}");
    }
    out
}

/// Elements go in batches: one statement per element would make large syncs parse slowly.
const ELEMENTS_PER_STATEMENT: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: Key = Key::Address(Ipv4Addr::new(10, 96, 0, 1), L4::Tcp, 80);
    const DB: Key = Key::Address(Ipv4Addr::new(10, 96, 0, 2), L4::Tcp, 80);
    const DNS: Key = Key::Address(Ipv4Addr::new(10, 96, 0, 3), L4::Udp, 53);

    fn service(chains: &[(&str, &[&str])], elements: &[(Key, &str)]) -> Arc<ServiceRules> {
        let mut s = ServiceRules::default();
        for (name, rules) in chains {
            s.add_chain(name.to_string(), rules.iter().map(|r| r.to_string()).collect());
        }
        for (k, v) in elements {
            s.element(SERVICE_IPS, *k, Some(Arc::from(*v)));
        }
        Arc::new(s)
    }

    fn ruleset(services: &[(&str, &Arc<ServiceRules>)]) -> Ruleset {
        let services: Services = services.iter().map(|(n, s)| (Arc::from(*n), Arc::clone(s))).collect();
        let mut claims = Claims::default();
        for (id, rules) in &services {
            claims.add(id, rules);
        }
        Ruleset::with_claims(services, &claims)
    }

    #[test]
    fn diff_touches_only_what_changed() {
        let b = service(&[("svc-b", &["goto ep-b1"])], &[(DB, "goto svc-b")]);
        let a = service(
            &[("svc-a", &["goto ep-a1"]), ("ep-a1", &["dnat ip to 10.0.0.1:80"])],
            &[(WEB, "goto svc-a")],
        );
        let old = ruleset(&[("a", &a), ("b", &b)]);
        assert_eq!(old.diff(&old), None);
        let a2 = service(
            &[("svc-a", &["goto ep-a2"]), ("ep-a2", &["dnat ip to 10.0.0.2:80"])],
            &[(WEB, "goto svc-a")],
        );
        let new = ruleset(&[("a", &a2), ("b", &b)]);
        let script = old.diff(&new).unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines,
            [
                "add chain inet weft ep-a2",
                "add rule inet weft ep-a2 dnat ip to 10.0.0.2:80",
                "flush chain inet weft svc-a",
                "add rule inet weft svc-a goto ep-a2",
                "flush chain inet weft ep-a1",
                "delete chain inet weft ep-a1",
            ]
        );
        assert!(!script.contains("svc-b"), "an unchanged Service is not touched");
    }

    #[test]
    fn elements_are_replaced_when_their_verdict_changes() {
        let old = ruleset(&[("a", &service(&[], &[(WEB, "goto svc-a")]))]);
        let new = ruleset(&[("a", &service(&[], &[(WEB, "goto svc-c"), (DNS, "goto svc-d")]))]);
        let script = old.diff(&new).unwrap();
        assert_eq!(
            script,
            "delete element inet weft service-ips { 10.96.0.1 . tcp . 80 }\n\
             add element inet weft service-ips { 10.96.0.1 . tcp . 80 : goto svc-c, 10.96.0.3 . udp . 53 : goto svc-d }\n"
        );
    }

    #[test]
    fn a_key_two_services_claim_stays_while_one_of_them_does() {
        let mut a = ServiceRules::default();
        a.element(HAIRPIN, Key::Hairpin(Ipv4Addr::new(10, 244, 1, 5)), None);
        let a = Arc::new(a);
        let both = ruleset(&[("a", &a), ("b", &a)]);
        assert_eq!(both.elements[HAIRPIN].len(), 1);
        let one = ruleset(&[("a", &a)]);
        assert_eq!(both.diff(&one), None);
        assert_eq!(
            one.diff(&Ruleset::default()).unwrap(),
            "delete element inet weft hairpin { 10.244.1.5 . 10.244.1.5 }\n"
        );
    }

    #[test]
    fn a_key_claimed_twice_goes_to_the_last_service_by_name_whatever_the_order_of_changes() {
        let ip = |verdict: &str| service(&[], &[(WEB, verdict)]);
        let (a, b, c) = (ip("goto svc-a"), ip("goto svc-b"), ip("goto svc-c"));
        let id = |name: &str| Arc::<str>::from(name);
        let owner = |claims: &Claims| {
            claims.elements[SERVICE_IPS][&WEB]
                .verdict()
                .as_deref()
                .map(str::to_string)
        };
        let mut claims = Claims::default();
        claims.add(&id("b"), &b);
        claims.add(&id("c"), &c);
        claims.add(&id("a"), &a);
        assert_eq!(owner(&claims).as_deref(), Some("goto svc-c"));
        claims.remove("c", &c);
        assert_eq!(
            owner(&claims).as_deref(),
            Some("goto svc-b"),
            "the next by name takes it over"
        );
        claims.remove("a", &a);
        assert_eq!(
            owner(&claims).as_deref(),
            Some("goto svc-b"),
            "an earlier claim leaving changes nothing"
        );
        claims.remove("b", &b);
        assert!(claims.elements.is_empty(), "no claim left, no element");
        // One Service claiming a key twice (two ports of one endpoint) gives it up at once.
        let mut twice = ServiceRules::default();
        twice.element(HAIRPIN, Key::Hairpin(Ipv4Addr::new(10, 244, 1, 5)), None);
        twice.element(HAIRPIN, Key::Hairpin(Ipv4Addr::new(10, 244, 1, 5)), None);
        twice.udp_endpoints = vec![(Ipv4Addr::new(10, 244, 1, 5), 53); 2];
        claims.add(&id("t"), &twice);
        claims.add(&id("u"), &twice);
        claims.remove("t", &twice);
        assert_eq!(claims.elements[HAIRPIN].len(), 1);
        assert_eq!(claims.udp.len(), 1);
        claims.remove("u", &twice);
        assert!(claims.elements.is_empty() && claims.udp.is_empty());
    }
}
