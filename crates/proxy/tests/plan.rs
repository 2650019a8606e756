//! The planner on a snapshot holding every kind of Service: the generated ruleset is reviewed as text
//! (insta snapshots), and behaviour that matters is also asserted directly.

use weft_netlink::nft_rules::Rule;
use weft_proxy::Ruleset;
use weft_proxy::ruleset::{
    HAIRPIN, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS, endpoints_map,
};

mod fixture;

fn planned(node: &str) -> Ruleset {
    fixture::State::initial().plan(node, "10.244.0.0/16")
}

#[test]
fn every_kind_of_service_as_nft() {
    insta::assert_snapshot!("node-1", planned("node-1").full());
}

fn verdict<'a>(r: &'a Ruleset, map: &str, key: &str) -> Option<&'a str> {
    r.verdict(map, key)
}

fn chain<'a>(r: &'a Ruleset, verdict: &str) -> &'a [String] {
    r.chain(verdict.trim_start_matches("goto ")).unwrap()
}

/// The endpoints a `dnat … map @endpoints-…` rule chooses from.
fn targets(r: &Ruleset, rule: &str) -> Vec<String> {
    let Some(Rule::DnatMap {
        proto,
        modulus,
        offset,
        map,
    }) = Rule::parse(rule)
    else {
        panic!("not a DNAT through the endpoints map: {rule}")
    };
    assert!((0..64).any(|shard| map == endpoints_map(proto, shard)), "{map}");
    let numbers = offset..offset + modulus;
    let mut out: Vec<(u32, String)> = (r.services.values().flat_map(|s| s.endpoints.iter()))
        .filter(|(m, n, _, _)| *m == map && numbers.contains(n))
        .map(|(_, n, addr, port)| (*n, format!("{addr}:{port}")))
        .collect();
    out.sort();
    assert_eq!(out.len(), modulus as usize, "every number of the block is an endpoint");
    out.into_iter().map(|(_, t)| t).collect()
}

/// What every Service port does, with endpoint numbers replaced by the endpoints they stand for.
fn behaviour(r: &Ruleset) -> Vec<(String, Vec<String>)> {
    r.chains()
        .map(|(name, rules)| {
            let rules = rules.iter().map(|rule| match rule.contains(" map @endpoints-") {
                true => format!("dnat to one of {:?}", targets(r, rule)),
                false => rule.clone(),
            });
            (name.clone(), rules.collect())
        })
        .collect()
}

#[test]
fn lookups_and_choices() {
    let r = planned("node-1");
    // ClusterIP ports go to their service chains; ready endpoints only, named targetPort resolved, one of
    // them at random.
    let web = chain(&r, verdict(&r, SERVICE_IPS, "10.96.0.20 . tcp . 80").unwrap());
    assert_eq!(web.len(), 2);
    assert!(
        web[1].starts_with("meta l4proto tcp dnat ip to numgen random mod 2 offset "),
        "{web:?}"
    );
    assert_eq!(targets(&r, &web[1]), ["10.244.1.5:8080", "10.244.2.5:8080"]);
    assert!(
        !r.chains()
            .any(|(_, rules)| rules.iter().any(|r| r.contains("10.244.2.9"))),
        "terminating endpoints wait while others are ready"
    );
    // Without affinity there are no endpoint chains.
    assert!(!r.chains().any(|(c, _)| c.starts_with("ep-") && c.contains("/web/")));
    // Local endpoints can reach themselves (hairpin), and edge's (externalTrafficPolicy: Local) wherever
    // they are.
    let hairpin: Vec<String> = r.elements[HAIRPIN].keys().map(|k| k.to_string()).collect();
    assert_eq!(
        hairpin,
        [
            "10.244.1.5 . 10.244.1.5",
            "10.244.1.8 . 10.244.1.8",
            "10.244.2.7 . 10.244.2.7"
        ]
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
    let draining = chain(&r, verdict(&r, SERVICE_IPS, "10.96.0.23 . tcp . 80").unwrap());
    assert_eq!(targets(&r, &draining[0]), ["10.244.1.8:80"]);
    // externalTrafficPolicy: Local on a node without local endpoints: external clients are dropped here,
    // pods still reach the service cluster-wide.
    let ext = verdict(&r, SERVICE_NODEPORTS, "tcp . 30443").unwrap();
    let local = chain(&r, ext).last().unwrap();
    assert_eq!(chain(&r, local), ["drop"]);
    assert_eq!(
        chain(&planned("node-2"), local).len(),
        2,
        "affinity check, then the local endpoint"
    );
    // Source ranges guard the load-balancer IP only.
    let lb = verdict(&r, SERVICE_IPS, "172.18.1.1 . tcp . 443").unwrap();
    assert_eq!(chain(&r, lb)[0], "ip saddr != { 172.18.0.0/24 } drop");
    assert_eq!(verdict(&r, SERVICE_IPS, "172.18.0.12 . tcp . 443"), Some(ext));
    // Affinity: a set and a chain per endpoint, the set named with its timeout.
    assert!(r.sets().any(|(s, _)| s.starts_with("aff-60-")));
    let edge = chain(&r, verdict(&r, SERVICE_IPS, "10.96.0.21 . tcp . 443").unwrap());
    assert!(edge[1].starts_with("ip saddr @aff-60-"), "{edge:?}");
    let endpoint = chain(&r, edge.last().unwrap());
    assert_eq!(endpoint[1], "meta l4proto tcp dnat ip to 10.244.2.7:8443");
    // Headless and ExternalName Services are left to DNS: only the ClusterIPs above are proxied.
    assert_eq!(r.services.len(), 6);
    assert!(r.services["default/headless"].elements.is_empty());
    assert!(r.services["default/elsewhere"].elements.is_empty());
    assert_eq!(r.udp_endpoints.len(), 2);
}

#[test]
fn planning_is_deterministic() {
    assert_eq!(planned("node-1"), planned("node-1"));
}

/// The fixture's objects with resourceVersions, as a real source delivers them.
fn versioned(state: &fixture::State, version: &str) -> weft_model::Snapshot {
    let mut objects = weft_model::parse(&state.yaml(), "versioned").unwrap();
    for o in &mut objects {
        o.meta_mut().resource_version = Some(version.to_string());
    }
    weft_model::Snapshot::new(1, objects)
}

#[test]
fn the_planner_replans_only_what_changed_and_plans_the_same() {
    let ctx = weft_proxy::Context {
        node: "node-1".into(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    };
    let mut planner = weft_proxy::Planner::default();
    let mut state = fixture::State::initial();
    let first = planner.plan(&versioned(&state, "1"), &ctx);
    assert_eq!(first, weft_proxy::plan(&versioned(&state, "1"), &ctx));
    // The endpoints of web's ports take blocks of two numbers.
    let web = |r: &Ruleset| r.services["default/web"].endpoints.clone();
    assert_eq!(web(&first).len(), 4);
    // web's slice changes (a new version); edge and the rest keep theirs.
    state.web_endpoints.push(("10.244.1.6", "node-1"));
    let mut snap = versioned(&state, "1");
    let key = weft_model::object::Key::new("EndpointSlice", Some("default"), "web-abc");
    snap.get_mut(&key).unwrap().meta_mut().resource_version = Some("2".into());
    let second = planner.plan(&snap, &ctx);
    let fresh = weft_proxy::plan(&snap, &ctx);
    assert_eq!(
        behaviour(&second),
        behaviour(&fresh),
        "does what planning from nothing does"
    );
    assert_eq!(second.elements, fresh.elements);
    // A Service that goes gives its blocks back, and the next one takes them.
    let mut gone = snap.clone();
    gone.remove(&weft_model::object::Key::new("Service", Some("default"), "web"));
    planner.plan(&gone, &ctx);
    let back = planner.plan(&snap, &ctx);
    let mut numbers: Vec<u32> = web(&back).iter().map(|e| e.1).collect();
    numbers.sort();
    let mut before: Vec<u32> = web(&second).iter().map(|e| e.1).collect();
    before.sort();
    assert_eq!(numbers, before);
    let shared = |name: &str| std::sync::Arc::ptr_eq(&first.services[name], &second.services[name]);
    assert!(
        shared("prod/edge") && shared("default/empty") && shared("default/draining"),
        "unchanged Services are not re-planned"
    );
    assert!(!shared("default/web"));
    // Another node: everything is planned again.
    let other = weft_proxy::Context {
        node: "node-2".into(),
        ..ctx
    };
    assert_eq!(planner.plan(&snap, &other), weft_proxy::plan(&snap, &other));
}
