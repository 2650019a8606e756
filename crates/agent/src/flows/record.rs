//! One flow as the agent serves it (`/flows`, JSON) and `weft observe` reads it. The shape is documented in
//! docs/observe.md; fields are only added, never renamed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// What happened to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Accepted as addressed.
    Forwarded,
    /// Accepted, its destination rewritten by the service proxy (a Service address to a backend).
    Translated,
    /// Dropped by a NetworkPolicy.
    Dropped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::Translated => "TRANSLATED",
            Verdict::Dropped => "DROPPED",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Verdict, String> {
        match s.to_ascii_uppercase().as_str() {
            "FORWARDED" => Ok(Verdict::Forwarded),
            "TRANSLATED" => Ok(Verdict::Translated),
            "DROPPED" => Ok(Verdict::Dropped),
            _ => Err(format!("unknown verdict {s:?} (FORWARDED, TRANSLATED or DROPPED)")),
        }
    }
}

/// Which kernel event a flow comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Conntrack confirmed a new connection (its first packet was accepted).
    New,
    /// Conntrack forgot a connection (closed or timed out); counters are its totals.
    End,
    /// A policy chain dropped a packet (logged through NFLOG, rate-limited).
    Drop,
}

/// What an address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Pod,
    Node,
    /// Anything outside the cluster's pods and nodes.
    World,
}

/// One end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub ip: IpAddr,
    /// 0 for protocols without ports.
    pub port: u16,
    pub kind: Kind,
    /// The pod's namespace (pods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's or the node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The node a pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Peer {
    /// `namespace/pod:port`, `node:port` or `ip:port`.
    pub fn label(&self) -> String {
        let who = match (&self.kind, &self.namespace, &self.name) {
            (Kind::Pod, Some(ns), Some(name)) => format!("{ns}/{name}"),
            (Kind::Node, _, Some(name)) => format!("node {name}"),
            _ => self.ip.to_string(),
        };
        if self.port == 0 {
            who
        } else {
            format!("{who}:{}", self.port)
        }
    }
}

/// The Service a connection was addressed to, before translation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    /// The Service port's name (empty when it has none).
    #[serde(default)]
    pub port_name: String,
    /// The address and port the client used (ClusterIP, node port, LoadBalancer or external address).
    pub ip: IpAddr,
    pub port: u16,
}

/// The policies behind a drop: the pod they isolate in `direction` allow the connection by no rule (the
/// isolation's implicit deny, as `weft trace` says "isolated by …; no rule allows it").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// `Ingress` or `Egress`.
    pub direction: String,
    /// The isolated pod, `namespace/name`.
    pub pod: String,
    /// The NetworkPolicies selecting it for that direction, `namespace/name`.
    pub policies: Vec<String>,
    /// Which rule dropped it: `default-deny` (no rule of these policies allows it).
    pub rule: String,
}

/// Packets and bytes each way (conntrack accounting, on `end` flows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Per agent, increasing: where a client resumes (`/flows?after=SEQ`).
    pub seq: u64,
    /// When the agent saw it, milliseconds since the Unix epoch.
    pub time: u64,
    /// The node whose agent saw it.
    pub node: String,
    pub event: Event,
    pub verdict: Verdict,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6` or the protocol number.
    pub protocol: String,
    pub source: Peer,
    /// Where the connection goes after translation (the backend of a Service).
    pub destination: Peer,
    /// The Service it was addressed to, when the service proxy translated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// The policies that dropped it (`DROPPED` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Conntrack's counters (`end` flows, when the node's `nf_conntrack_acct` is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
}

/// A protocol number's name.
pub fn protocol_name(n: u8) -> String {
    match n {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}
