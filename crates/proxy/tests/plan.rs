//! The planner on a snapshot holding every kind of Service: the generated ruleset is reviewed as text
//! (insta snapshots), and behaviour that matters is also asserted directly.

use weft_proxy::Ruleset;
use weft_proxy::ruleset::{NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS};

mod fixture;

fn planned(node: &str) -> Ruleset {
    fixture::State::initial().plan(node, "10.244.0.0/16")
}

#[test]
fn every_kind_of_service_as_nft() {
    insta::assert_snapshot!("node-1", planned("node-1").full());
}

fn verdict<'a>(r: &'a Ruleset, map: &str, key: &str) -> Option<&'a str> {
    r.elements.get(map)?.get(key).map(String::as_str)
}

#[test]
fn lookups_and_choices() {
    let r = planned("node-1");
    // ClusterIP ports go to their service chains; ready endpoints only, named targetPort resolved.
    let web = verdict(&r, SERVICE_IPS, "10.96.0.20 . tcp . 80").unwrap();
    let chain = &r.chains[web.trim_start_matches("goto ")];
    assert!(chain[1].starts_with("numgen random mod 2 0 goto ep-"), "{chain:?}");
    assert!(chain[2].starts_with("goto ep-"), "{chain:?}");
    assert!(r.chains.keys().any(|c| c.ends_with("__10.244.1.5/8080")));
    assert!(
        !r.chains.keys().any(|c| c.contains("10.244.2.9")),
        "terminating endpoints wait while others are ready"
    );
    // No endpoints: refused, on the ClusterIP and the NodePort.
    assert_eq!(
        verdict(&r, NO_ENDPOINT_SERVICES, "10.96.0.22 . tcp . 80"),
        Some("goto reject-chain")
    );
    assert_eq!(
        verdict(&r, NO_ENDPOINT_NODEPORTS, "tcp . 30080"),
        Some("goto reject-chain")
    );
    // Only serving-terminating endpoints left: they are used.
    assert!(r.chains.keys().any(|c| c.contains("10.244.1.8/80")));
    // externalTrafficPolicy: Local on a node without local endpoints: external clients are dropped here,
    // pods still reach the service cluster-wide.
    let ext = verdict(&r, SERVICE_NODEPORTS, "tcp . 30443")
        .unwrap()
        .trim_start_matches("goto ");
    let local = r.chains[ext].last().unwrap().trim_start_matches("goto ");
    assert_eq!(r.chains[local], ["drop"]);
    assert_eq!(
        planned("node-2").chains[local].len(),
        2,
        "affinity check, then the local endpoint"
    );
    // Source ranges guard the load-balancer IP only.
    let lb = verdict(&r, SERVICE_IPS, "172.18.1.1 . tcp . 443")
        .unwrap()
        .trim_start_matches("goto ");
    assert_eq!(r.chains[lb][0], "ip saddr != { 172.18.0.0/24 } drop");
    assert_eq!(
        verdict(&r, SERVICE_IPS, "172.18.0.12 . tcp . 443"),
        Some(format!("goto {ext}").as_str())
    );
    // Affinity: a set per endpoint, named with its timeout.
    assert!(r.sets.keys().any(|s| s.starts_with("aff-60-")));
    // Headless and ExternalName Services are left to DNS.
    assert!(!r.elements.values().flat_map(|m| m.keys()).any(|k| k.contains("None")));
    assert_eq!(r.udp_endpoints.len(), 2);
}

#[test]
fn planning_is_deterministic() {
    assert_eq!(planned("node-1"), planned("node-1"));
}
