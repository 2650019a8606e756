//! Detecting a kube-proxy in a throwaway network namespace (root): its nftables table, and its iptables-nft
//! chain, are each found; a namespace with weft's own tables alone has none.

use weft_agent::kube_proxy::{Finding, detect};
use weft_testkit::{Ns, root};

fn detect_in(ns: &Ns) -> Vec<Finding> {
    ns.netns()
        .run(|| Ok(detect()))
        .expect("joining the namespace")
        .expect("nft")
}

#[test]
fn a_kube_proxy_table_or_chain_is_detected() {
    if !root() {
        eprintln!("skipping: needs root");
        return;
    }
    let ns = Ns::new("cdkp");
    ns.ok(&["nft", "add table inet weft"]);
    assert_eq!(detect_in(&ns), [], "weft's own table is no kube-proxy");
    ns.ok(&["nft", "add table ip kube-proxy"]);
    assert_eq!(detect_in(&ns), [Finding::NftTable { family: "ip".into() }]);
    ns.ok(&["nft", "delete table ip kube-proxy"]);
    // iptables-nft's nat table with kube-proxy's iptables-mode chain in it.
    ns.ok(&["nft", "add table ip6 nat"]);
    assert_eq!(detect_in(&ns), [], "a nat table alone is no kube-proxy");
    ns.ok(&["nft", "add chain ip6 nat KUBE-SERVICES"]);
    assert_eq!(
        detect_in(&ns),
        [Finding::IptablesChain {
            family: "ip6".into(),
            backend: "iptables-nft"
        }]
    );
}
