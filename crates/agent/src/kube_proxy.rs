//! Finding a kube-proxy on the node. weft's service proxy replaces kube-proxy; with both running, the two program
//! the same ClusterIPs and NodePorts and whichever hook runs first wins, packet by packet. The agent does not
//! fight it: it says so (a warning and an Event on the Node) and leaves kube-proxy's rules alone.
//!
//! kube-proxy's nftables mode owns the tables `ip kube-proxy` and `ip6 kube-proxy`; its iptables mode puts the
//! chain `KUBE-SERVICES` in the `nat` table, which iptables-nft keeps as the nftables table `ip nat` (`ip6 nat`)
//! and iptables-legacy in the kernel's x_tables (read back with `iptables-legacy-save`).

use std::fmt;
use std::process::Command;

/// One sign of a kube-proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// kube-proxy's nftables mode: its table in `family` (ip or ip6).
    NftTable { family: String },
    /// kube-proxy's iptables mode: `KUBE-SERVICES` in the nat table of `family` (ip or ip6), through `backend`
    /// (iptables-nft or iptables-legacy).
    IptablesChain { family: String, backend: &'static str },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NftTable { family } => write!(f, "nftables table `{family} kube-proxy`"),
            Finding::IptablesChain { family, backend } => {
                write!(f, "chain KUBE-SERVICES in the {family} nat table ({backend})")
            }
        }
    }
}

/// What points at a kube-proxy in the calling thread's network namespace; empty when nothing does. Missing tools
/// (no `iptables-legacy-save`) count as nothing found; `nft` itself is needed by the agent anyway.
pub fn detect() -> Result<Vec<Finding>, weft_netlink::Error> {
    let tables = tables(&weft_netlink::nft::run(&["list", "tables"], "")?);
    let mut found = Vec::new();
    for family in ["ip", "ip6"] {
        if tables.iter().any(|(f, t)| f == family && t == "kube-proxy") {
            found.push(Finding::NftTable { family: family.into() });
        }
        if tables.iter().any(|(f, t)| f == family && t == "nat")
            && weft_netlink::nft::run(&["list", "chain", family, "nat", "KUBE-SERVICES"], "").is_ok()
        {
            found.push(Finding::IptablesChain {
                family: family.into(),
                backend: "iptables-nft",
            });
        }
    }
    found.extend(legacy());
    Ok(found)
}

/// kube-proxy's chain in the legacy x_tables nat tables. Only read when the kernel has a legacy nat table at all
/// (`ip_tables_names` of the namespace), so that looking never loads the legacy modules.
fn legacy() -> Vec<Finding> {
    let mut found = Vec::new();
    for (family, names, save) in [
        ("ip", "/proc/thread-self/net/ip_tables_names", "iptables-legacy-save"),
        ("ip6", "/proc/thread-self/net/ip6_tables_names", "ip6tables-legacy-save"),
    ] {
        let has_nat = std::fs::read_to_string(names).is_ok_and(|t| t.lines().any(|l| l.trim() == "nat"));
        if !has_nat {
            continue;
        }
        let Ok(out) = Command::new(save).args(["-t", "nat"]).output() else {
            continue;
        };
        if out.status.success() && saves_kube_services(&String::from_utf8_lossy(&out.stdout)) {
            found.push(Finding::IptablesChain {
                family: family.into(),
                backend: "iptables-legacy",
            });
        }
    }
    found
}

/// The (family, name) of every table in `nft list tables` output.
fn tables(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "table").then_some(())?;
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Whether `iptables-save` output declares the chain `KUBE-SERVICES` (`:KUBE-SERVICES - [0:0]`).
fn saves_kube_services(save: &str) -> bool {
    save.lines()
        .any(|l| l.split_whitespace().next() == Some(":KUBE-SERVICES"))
}

/// The one-line warning the agent logs and records in the Node's Event.
pub fn warning(found: &[Finding]) -> String {
    let signs: Vec<String> = found.iter().map(ToString::to_string).collect();
    format!(
        "kube-proxy is running on this node ({}): it and weft's service proxy would both handle Services; \
         weft leaves kube-proxy's rules alone, so remove kube-proxy (docs/kube-proxy.md)",
        signs.join(", ")
    )
}

/// Records `message` as a Warning Event on the Node `node` (reason `KubeProxyRunning`, in `default` where node
/// Events go), so that `kubectl describe node` shows it; an agent restarting counts the same Event up.
pub async fn record(client: &kube::Client, node: &str, message: &str) -> Result<(), kube::Error> {
    use kube::api::{Api, PostParams};
    use weft_model::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use weft_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use weft_model::k8s_openapi::jiff::Timestamp;

    let uid = Api::<weft_model::k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(node)
        .await?
        .metadata
        .uid;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let name = format!("{node}.weft-kube-proxy");
    // jiff is built without its clock: the time from std.
    let now = Time(Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH));
    let mut event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid,
            ..ObjectReference::default()
        },
        reason: Some("KubeProxyRunning".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("weft-agent".into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some("weft-agent".into()),
        reporting_instance: Some(node.to_string()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        count: Some(1),
        ..Event::default()
    };
    match events.create(&PostParams::default(), &event).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let old = events.get(&name).await?;
            event.metadata = old.metadata;
            event.first_timestamp = old.first_timestamp;
            event.count = Some(old.count.unwrap_or(1) + 1);
            events.replace(&name, &PostParams::default(), &event).await.map(drop)
        }
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_read_from_nft_list_tables() {
        let listing = "table inet weft\ntable ip kube-proxy\ntable ip6 nat\n";
        assert_eq!(
            tables(listing),
            [("inet", "weft"), ("ip", "kube-proxy"), ("ip6", "nat")].map(|(f, t)| (f.to_string(), t.to_string()))
        );
        assert!(tables("").is_empty());
    }

    #[test]
    fn kube_services_is_found_in_iptables_save_output() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n";
        assert!(saves_kube_services(save));
        assert!(!saves_kube_services(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A X -j KUBE-SERVICES-X\nCOMMIT\n"
        ));
    }

    #[test]
    fn the_warning_names_every_sign() {
        let text = warning(&[
            Finding::NftTable { family: "ip".into() },
            Finding::IptablesChain {
                family: "ip".into(),
                backend: "iptables-nft",
            },
        ]);
        assert!(text.contains("`ip kube-proxy`"), "{text}");
        assert!(
            text.contains("KUBE-SERVICES in the ip nat table (iptables-nft)"),
            "{text}"
        );
    }
}
