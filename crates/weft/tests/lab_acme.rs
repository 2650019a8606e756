//! `weft lab up --acme`: pebble and its DNS on the external host, which resolves every name to the first
//! LoadBalancer address and trusts pebble's directory and roots without `-k`; `lab down` stops them. Root only.

mod lab;

use lab::{Lab, root};

const DIRECTORY: &str = "https://172.18.0.100:14000/dir";

#[test]
fn lab_up_acme_runs_pebble_on_the_external_host() {
    if !root() {
        return;
    }
    let lab = Lab::start(&["--bare", "--nodes", "1", "--acme"], "");
    let external = |command: &[&str]| {
        let mut args = vec!["lab", "exec", "external", "--"];
        args.extend_from_slice(command);
        lab.ok(&args)
    };
    // The directory answers over HTTPS, verified with the external host's bundle (no -k).
    let directory = external(&["curl", "-sS", "--max-time", "5", DIRECTORY]);
    assert!(directory.contains("\"newOrder\""), "{directory}");
    // Any name resolves to the lab's first LoadBalancer address, through pebble's DNS.
    let hosts = external(&["getent", "hosts", "blue.weft.test"]);
    assert!(hosts.starts_with("172.18.1.1 "), "{hosts}");
    // The bundle holds the root pebble issues under (fetched again from its management interface).
    let root_pem = external(&["curl", "-sS", "--max-time", "5", "https://172.18.0.100:15000/roots/0"]);
    let bundle = external(&["cat", "/etc/ssl/certs/ca-certificates.crt"]);
    assert!(root_pem.contains("BEGIN CERTIFICATE") && bundle.contains(root_pem.trim()));
    let status = lab.ok(&["lab", "status"]);
    assert!(status.contains(&format!("acme:       {DIRECTORY}")), "{status}");
    // Nodes (and the pods behind them) reach the directory with the lab's CA file, as an Issuer's caBundle.
    let ca = format!("/run/weft/labs/{}/acme/ca.pem", lab.name);
    let out = lab.node_exec(
        "node-1",
        &["curl", "-sS", "--max-time", "5", "--cacert", &ca, DIRECTORY],
    );
    assert!(out.status.success(), "{}", lab::text(&out.stderr));
    let config = format!("/run/weft/labs/{}/acme/config.json", lab.name);
    lab.down();
    let left = std::process::Command::new("pgrep")
        .args(["-f", &config])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "pebble outlived lab down: {}",
        lab::text(&left.stdout)
    );
}
