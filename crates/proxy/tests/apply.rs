//! The applier against the kernel, in a namespace of its own: the whole table first, then only differences,
//! and a full resync when someone else changed the table under us.

use std::process::Command;
use weft_proxy::{Context, Proxier, plan};
use weft_testkit::{Ns, root};

fn snapshot(endpoint: &str) -> weft_model::Snapshot {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec: {{clusterIP: 10.96.0.20, ports: [{{port: 80}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{port: 8080, protocol: TCP}}]\nendpoints: [{{addresses: [{endpoint}]}}]\n"
    );
    weft_model::Snapshot::new(1, weft_model::parse(&text, "t").unwrap())
}

fn listing() -> String {
    String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "table", "inet", "weft"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[test]
fn full_then_incremental_then_recovery() {
    if !root() {
        return;
    }
    let scratch = Ns::new("proxy");
    let ns = scratch.netns();
    let ctx = Context {
        node: "n".into(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    };
    ns.run(|| {
        let mut proxier = Proxier::new();
        let first = proxier.sync(plan(&snapshot("10.244.1.5"), &ctx)).unwrap();
        assert!(first.full);
        let text = plan(&snapshot("10.244.1.5"), &ctx).full();
        assert_eq!(first.script, text.len(), "the whole table, streamed into nft");
        assert!(listing().contains("0 : 10.244.1.5 . 8080"));
        let same = proxier.sync(plan(&snapshot("10.244.1.5"), &ctx)).unwrap();
        assert_eq!(same.script, 0, "nothing changed, nothing sent");
        let moved = proxier.sync(plan(&snapshot("10.244.1.6"), &ctx)).unwrap();
        assert!(!moved.full);
        let table = listing();
        assert!(
            table.contains("0 : 10.244.1.6 . 8080") && !table.contains("10.244.1.5"),
            "{table}"
        );
        // Someone removes our table: the next incremental sync fails and a full one follows.
        Command::new("nft")
            .args(["delete", "table", "inet", "weft"])
            .status()
            .unwrap();
        let healed = proxier.sync(plan(&snapshot("10.244.1.7"), &ctx)).unwrap();
        assert!(healed.full);
        assert!(listing().contains("0 : 10.244.1.7 . 8080"));
        Ok(())
    })
    .unwrap();
}

/// An agent's first sync: another table's script in the same transaction; when that script is refused, this
/// table is applied alone, the other is left to its owner, and the report says why.
#[test]
fn first_sync_with_another_table_or_alone_when_it_is_refused() {
    if !root() {
        return;
    }
    let scratch = Ns::new("proxyw");
    let ns = scratch.netns();
    let ctx = Context {
        node: "n".into(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    };
    let tables =
        || String::from_utf8_lossy(&Command::new("nft").args(["list", "tables"]).output().unwrap().stdout).into_owned();
    ns.run(|| {
        let mut proxier = Proxier::new();
        let other = "table inet other {\n  chain c {\n  }\n}\n";
        let (report, joint) = proxier.sync_with(plan(&snapshot("10.244.1.5"), &ctx), other).unwrap();
        assert!(joint && report.full && report.fallback.is_none());
        assert!(tables().contains("table inet other") && listing().contains("10.244.1.5 . 8080"));
        // Applied now: a second call is an ordinary sync, the other script not sent again.
        let (report, joint) = proxier.sync_with(plan(&snapshot("10.244.1.6"), &ctx), "bogus").unwrap();
        assert!(!joint && !report.full && report.fallback.is_none());

        Command::new("nft").args(["flush", "ruleset"]).status().unwrap();
        let mut proxier = Proxier::new();
        let (report, joint) = proxier
            .sync_with(plan(&snapshot("10.244.1.7"), &ctx), "table bogus {")
            .unwrap();
        assert!(!joint && report.full && report.fallback.is_some());
        assert!(listing().contains("10.244.1.7 . 8080"));
        assert!(!tables().contains("bogus"));
        Ok(())
    })
    .unwrap();
}
