//! Incremental syncs over nfnetlink against the same syncs through `nft -f`: two namespaces, one sequence of
//! plans (every kind of Service, then endpoints, Services and session affinity coming and going), and after
//! every step both tables must list exactly alike, as text and as the expressions the kernel holds.

use std::process::Command;
use weft_proxy::{Proxier, Ruleset};
use weft_testkit::{Ns, root};

mod fixture;

use fixture::State;

/// The sequence: (what changed, node, cluster CIDR, state, whether the change can go over netlink).
fn steps() -> Vec<(&'static str, &'static str, &'static str, State, bool)> {
    let fixture = State {
        web_endpoints: vec![("10.244.1.5", "node-1"), ("10.244.2.5", "node-2")],
        affinity: None,
        edge: true,
        ranges: "[172.18.0.0/24]",
        api: false,
    };
    let mut v = vec![("fixture", "node-1", "10.244.0.0/16", fixture.clone(), true)];
    let mut s = fixture;
    s.web_endpoints.push(("10.244.1.6", "node-1"));
    v.push(("endpoint added", "node-1", "10.244.0.0/16", s.clone(), true));
    s.web_endpoints.retain(|(ip, _)| *ip != "10.244.2.5");
    v.push(("endpoint removed", "node-1", "10.244.0.0/16", s.clone(), true));
    s.web_endpoints.retain(|(ip, _)| *ip != "10.244.1.6");
    s.web_endpoints.push(("10.244.1.7", "node-1"));
    v.push((
        "endpoint replaced (map elements only)",
        "node-1",
        "10.244.0.0/16",
        s.clone(),
        true,
    ));
    s.api = true;
    v.push(("Service added", "node-1", "10.244.0.0/16", s.clone(), true));
    s.affinity = Some(30);
    v.push(("affinity on", "node-1", "10.244.0.0/16", s.clone(), true));
    s.affinity = Some(45);
    v.push(("affinity timeout changed", "node-1", "10.244.0.0/16", s.clone(), true));
    v.push(("other node's view", "node-2", "10.244.0.0/16", s.clone(), true));
    s.affinity = None;
    v.push(("affinity off", "node-2", "10.244.0.0/16", s.clone(), true));
    s.edge = false;
    v.push(("Service removed", "node-2", "10.244.0.0/16", s.clone(), true));
    s.edge = true;
    s.ranges = "[172.18.0.0/24, 192.168.0.0/20]";
    v.push(("two source ranges (nft)", "node-2", "10.244.0.0/16", s.clone(), false));
    s.ranges = "[172.18.0.0/24]";
    v.push(("Service back, one range", "node-1", "10.244.0.0/16", s.clone(), true));
    v.push(("unaligned cluster CIDR", "node-1", "10.240.0.0/12", s.clone(), true));
    s.api = false;
    s.web_endpoints.clear();
    v.push(("Service removed, no endpoints", "node-1", "10.240.0.0/12", s, true));
    v
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table as text, and the expressions of every rule and element as the kernel holds them. Elements are
/// put in order: a hash set lists them in the order of its (randomly seeded) hash.
fn listings() -> (String, String) {
    let text = nft(&["list", "table", "inet", "weft"]);
    let debug = nft(&["--debug=netlink", "list", "table", "inet", "weft"]);
    (sorted_elements(&text), sorted_element_lines(&debug))
}

/// `elements = { b, a }` → `elements = { a, b }`.
fn sorted_elements(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("elements = {") {
        let (before, after) = rest.split_at(at + "elements = {".len());
        let end = after.find('}').expect("closing brace");
        let mut elements: Vec<&str> = after[..end].split(',').map(str::trim).collect();
        elements.sort_unstable();
        out.push_str(before);
        out.push_str(&format!(" {} ", elements.join(", ")));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Runs of `\telement …` lines in order.
fn sorted_element_lines(debug: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in debug.lines() {
        if line.starts_with("\telement ") {
            run.push(line);
            continue;
        }
        run.sort_unstable();
        out.append(&mut run);
        out.push(line);
    }
    run.sort_unstable();
    out.append(&mut run);
    out.join("\n")
}

#[test]
fn netlink_and_nft_build_the_same_table() {
    if !root() {
        return;
    }
    let scratch = [Ns::new("nl"), Ns::new("nft")];
    let (via_netlink, via_nft) = (scratch[0].netns(), scratch[1].netns());
    let mut proxier = Proxier::new();
    let mut applied: Option<Ruleset> = None;
    for (what, node, cidr, state, over_netlink) in steps() {
        let desired = state.plan(node, cidr);
        let report = via_netlink
            .run(|| proxier.sync(desired.clone()))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(report.full, applied.is_none(), "{what}: {report:?}");
        if applied.is_some() {
            assert_eq!(report.netlink, over_netlink, "{what}: {report:?}");
        }
        let script = match &applied {
            Some(old) => old.diff(&desired),
            None => Some(desired.full()),
        };
        if what.contains("elements only") {
            let script = script.as_deref().unwrap_or_default();
            assert!(
                script.contains("element") && !script.contains("rule"),
                "{what}: {script}"
            );
        }
        via_nft
            .run(|| script.map_or(Ok(()), |s| weft_netlink::nft::apply(&s)))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (nl_text, nl_debug) = via_netlink.run(|| Ok(listings())).unwrap();
        let (nft_text, nft_debug) = via_nft.run(|| Ok(listings())).unwrap();
        assert_eq!(nl_text, nft_text, "{what}: listings differ");
        assert_eq!(nl_debug, nft_debug, "{what}: expressions differ");
        assert!(
            nl_text.contains("chain svc-") || what.contains("no endpoints"),
            "{what}: {nl_text}"
        );
        applied = Some(desired);
    }
}
