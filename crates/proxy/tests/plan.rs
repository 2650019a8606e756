//! The planner on a snapshot holding every kind of Service: the generated ruleset is reviewed as text
//! (insta snapshots), and behaviour that matters is also asserted directly.

use std::sync::Arc;
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
    // UDP flows keep every serving endpoint, the terminating one of web's dns port included.
    let udp: Vec<String> = r
        .udp_endpoints
        .iter()
        .map(|(ip, port)| format!("{ip}:{port}"))
        .collect();
    assert_eq!(udp, ["10.244.1.5:53", "10.244.2.5:53", "10.244.2.9:53"]);
}

#[test]
fn planning_is_deterministic() {
    assert_eq!(planned("node-1"), planned("node-1"));
}

/// The fixture's objects with resourceVersions, as a real source delivers them.
fn versioned(state: &fixture::State, version: &str) -> Arc<weft_model::Snapshot> {
    let mut objects = weft_model::parse(&state.yaml(), "versioned").unwrap();
    for o in &mut objects {
        o.meta_mut().resource_version = Some(version.to_string());
    }
    Arc::new(weft_model::Snapshot::new(1, objects))
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
    Arc::make_mut(&mut snap)
        .get_mut(&key)
        .unwrap()
        .meta_mut()
        .resource_version = Some("2".into());
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
    Arc::make_mut(&mut gone).remove(&weft_model::object::Key::new("Service", Some("default"), "web"));
    planner.plan(&gone, &ctx);
    let back = planner.plan(&snap, &ctx);
    let mut numbers: Vec<u32> = web(&back).iter().map(|e| e.1).collect();
    numbers.sort();
    let mut before: Vec<u32> = web(&second).iter().map(|e| e.1).collect();
    before.sort();
    assert_eq!(numbers, before);
    let shared = |name: &str| Arc::ptr_eq(&first.services[name], &second.services[name]);
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

const CHURN: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: a, namespace: default, resourceVersion: "1"}
spec: {clusterIP: 10.96.0.1, externalIPs: [192.0.2.10], ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: default, resourceVersion: "1"}
spec: {clusterIP: 10.96.0.2, externalIPs: [192.0.2.10], ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: u, namespace: default, resourceVersion: "1"}
spec: {clusterIP: 10.96.0.3, ports: [{port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: h, namespace: default, resourceVersion: "1"}
spec: {clusterIP: 10.96.0.4, type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 32000,
       ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: a-1, namespace: default, resourceVersion: "1", labels: {kubernetes.io/service-name: a}}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.1.5], nodeName: node-1}, {addresses: [10.244.2.5], nodeName: node-2}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: u-1, namespace: default, resourceVersion: "1", labels: {kubernetes.io/service-name: u}}
addressType: IPv4
ports: [{port: 5353, protocol: UDP}]
endpoints: [{addresses: [10.244.1.6], nodeName: node-1}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: h-1, namespace: default, resourceVersion: "1", labels: {kubernetes.io/service-name: h}}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints: [{addresses: [10.244.2.7], nodeName: node-2}]
"#;

#[test]
fn planning_change_by_change_ends_where_planning_from_nothing_does() {
    use weft_model::object::Key;
    let ctx = weft_proxy::Context {
        node: "node-1".into(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    };
    let slice = |name: &str| Key::new("EndpointSlice", Some("default"), name);
    let svc = |name: &str| Key::new("Service", Some("default"), name);
    let objects = weft_model::parse(CHURN, "churn").unwrap();
    let mut snap = Arc::new(weft_model::Snapshot::new(1, objects.clone()));
    let mut planner = weft_proxy::Planner::default();
    let check = |planner: &mut weft_proxy::Planner, snap: &Arc<weft_model::Snapshot>, step: &str| {
        let incremental = planner.plan(snap, &ctx);
        let fresh = weft_proxy::plan(snap, &ctx);
        assert_eq!(behaviour(&incremental), behaviour(&fresh), "{step}");
        assert_eq!(incremental.elements, fresh.elements, "{step}");
        assert_eq!(incremental.udp_endpoints, fresh.udp_endpoints, "{step}");
        let health = |r: &Ruleset| {
            r.services
                .iter()
                .map(|(id, s)| (id.clone(), s.health_check))
                .collect::<Vec<_>>()
        };
        assert_eq!(health(&incremental), health(&fresh), "{step}");
        incremental
    };
    let first = check(&mut planner, &snap, "start");
    let external = |r: &Ruleset| r.verdict(SERVICE_IPS, "192.0.2.10 . tcp . 80").map(str::to_string);
    // b has no endpoints yet, so the external IP is a's.
    assert!(external(&first).unwrap().contains("default/a/"));
    assert_eq!(first.services["default/h"].health_check, Some((32000, 0)));
    // Every change bumps the object's resourceVersion, as the API does.
    let change = |snap: &mut Arc<weft_model::Snapshot>, key: &Key, f: &dyn Fn(&mut weft_model::Object)| {
        let object = Arc::make_mut(snap).get_mut(key).unwrap();
        f(object);
        let meta = object.meta_mut();
        let version: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
        meta.resource_version = Some((version + 1).to_string());
    };
    // a's slice moves to b: b gets the endpoints and with them the external IP (b is after a by name).
    change(&mut snap, &slice("a-1"), &|o| {
        let labels = o.meta_mut().labels.as_mut().unwrap();
        labels.insert("kubernetes.io/service-name".into(), "b".into());
    });
    let moved = check(&mut planner, &snap, "slice relabelled");
    assert!(external(&moved).unwrap().contains("default/b/"));
    assert!(
        moved.elements[NO_ENDPOINT_SERVICES]
            .keys()
            .any(|k| k.to_string() == "10.96.0.1 . tcp . 80")
    );
    // b goes: the external IP falls back to a, which has no endpoints now.
    Arc::make_mut(&mut snap).remove(&svc("b"));
    let gone = check(&mut planner, &snap, "service deleted");
    assert_eq!(external(&gone), None);
    assert!(gone.verdict(NO_ENDPOINT_SERVICES, "192.0.2.10 . tcp . 80").is_some());
    // u's only slice goes: its UDP endpoint is no longer in use.
    assert!(!gone.udp_endpoints.is_empty());
    Arc::make_mut(&mut snap).remove(&slice("u-1"));
    let no_udp = check(&mut planner, &snap, "slice deleted");
    assert!(no_udp.udp_endpoints.is_empty());
    // b comes back elsewhere; h gains an endpoint on this node.
    let mut b = objects.iter().find(|o| o.name() == "b").unwrap().clone();
    if let weft_model::Object::Service(s) = &mut b {
        s.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.9".into());
        s.metadata.resource_version = Some("7".into());
    }
    Arc::make_mut(&mut snap).insert(b);
    change(&mut snap, &slice("h-1"), &|o| {
        if let weft_model::Object::EndpointSlice(s) = o {
            s.endpoints[0].node_name = Some("node-1".into());
        }
    });
    let back = check(&mut planner, &snap, "service re-created, endpoint moved");
    assert_eq!(back.services["default/h"].health_check, Some((32000, 1)));
    assert!(back.verdict(SERVICE_IPS, "10.96.0.9 . tcp . 80").is_some());
    // The same objects decoded anew (a whole snapshot from a new watch): nothing is planned again.
    let anew = Arc::new(weft_model::Snapshot::new(2, snap.objects().cloned()));
    let again = check(&mut planner, &anew, "whole snapshot");
    assert!(back.services.iter().all(|(id, s)| Arc::ptr_eq(s, &again.services[id])));
}

#[test]
fn a_change_of_every_service_is_applied_in_parts_and_ends_where_planning_from_nothing_does() {
    use weft_model::{Object, Snapshot};
    let ctx = weft_proxy::Context {
        node: "node-1".into(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    };
    let objects = weft_model::parse(CHURN, "churn").unwrap();
    let before = Arc::new(Snapshot::new(1, objects.clone()));
    let mut planner = weft_proxy::Planner::default();
    // The first plan is whole whatever the part: its ruleset replaces the whole table.
    let mut parts = Vec::new();
    let keep = |r: Ruleset| {
        parts.push(r);
        Ok::<(), ()>(())
    };
    planner.plan_in_parts(&before, &ctx, 1, keep).unwrap();
    assert_eq!(parts.len(), 1);
    let mut applied = parts.remove(0);
    // A relist after which every object is a new version, every endpoint on a new address.
    let relisted = |version: &str, net: &str| {
        let objects = objects.iter().cloned().map(|mut o| {
            if let Object::EndpointSlice(s) = &mut o {
                for e in &mut s.endpoints {
                    e.addresses = vec![e.addresses[0].replace("10.244.", net)];
                }
            }
            o.meta_mut().resource_version = Some(version.into());
            o
        });
        Arc::new(Snapshot::new(2, objects.collect::<Vec<_>>()))
    };
    let after = relisted("2", "10.245.");
    let replaced = Arc::downgrade(&before);
    drop(before);
    let mut steps = 0;
    planner
        .plan_in_parts(&after, &ctx, 1, |desired| {
            steps += 1;
            assert!(
                replaced.upgrade().is_none(),
                "the versions the relist replaced are not held while it is planned"
            );
            let replanned = (desired.services.iter())
                .filter(|(id, s)| !applied.services.get(*id).is_some_and(|a| Arc::ptr_eq(a, s)))
                .count();
            assert_eq!(replanned, 1, "one Service per part");
            applied = desired;
            Ok::<(), ()>(())
        })
        .unwrap();
    assert_eq!(steps, 4, "every Service, one at a time");
    let fresh = weft_proxy::plan(&after, &ctx);
    assert_eq!(behaviour(&applied), behaviour(&fresh));
    assert_eq!(applied.elements, fresh.elements);
    assert_eq!(applied.udp_endpoints, fresh.udp_endpoints);
    // An apply that fails stops the parts; the next plan goes on with the Services not planned yet.
    let again = relisted("3", "10.246.");
    let mut tries = 0;
    let failing = planner.plan_in_parts(&again, &ctx, 3, |_| {
        tries += 1;
        Err("the kernel refused")
    });
    assert_eq!((failing, tries), (Err("the kernel refused"), 1));
    let mut rest = Vec::new();
    let keep = |r: Ruleset| {
        rest.push(r);
        Ok::<(), ()>(())
    };
    planner.plan_in_parts(&again, &ctx, 3, keep).unwrap();
    assert_eq!(rest.len(), 1, "the one Service left");
    let fresh = weft_proxy::plan(&again, &ctx);
    assert_eq!(behaviour(&rest[0]), behaviour(&fresh));
    assert_eq!(rest[0].elements, fresh.elements);
}
