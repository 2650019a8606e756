//! Kubeconfig files: the lab's entries merged into a user's file keep everything else in it, removal undoes the
//! merge, and concurrent labs do not lose each other's entries.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Barrier;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::TempDir;
use serde_json::{Value, json};
use weft_apiserver::kubeconfig::{KubeconfigError, merge_into, remove_from, standalone};

const CA: &str = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nADMIN\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n";

/// A user's file with things a rewrite could lose: comments, an exec user, a context namespace, preferences,
/// extensions, and strings that look like other types.
const FOREIGN: &str = r#"# my clusters
apiVersion: v1
kind: Config
preferences:
  colors: true
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    insecure-skip-tls-verify: true
    tls-server-name: "0123"
users:
- name: prod-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: get-token
      args: ["--flag", "true", "1.5"]
      interactiveMode: Never
contexts:
- name: prod
  context:
    cluster: prod
    user: prod-admin
    namespace: "no"
current-context: prod
extensions:
- name: tool
  extension:
    value: 42
"#;

fn read(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn merge(path: &Path, name: &str, server: &str) {
    merge_into(path, name, server, CA, CERT, KEY).unwrap();
}

fn named<'a>(config: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    config[list].as_array()?.iter().find(|e| e["name"] == name)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn standalone_holds_only_the_lab() {
    let yaml = standalone("weft-a", "https://127.0.0.1:6443", CA, CERT, KEY).unwrap();
    let config: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(config["current-context"], "weft-a");
    assert_eq!(config["kind"], "Config");
    assert_eq!(config["clusters"][0]["cluster"]["server"], "https://127.0.0.1:6443");
    let data = |v: &Value| String::from_utf8(BASE64.decode(v.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(
        data(&config["clusters"][0]["cluster"]["certificate-authority-data"]),
        CA
    );
    assert_eq!(data(&config["users"][0]["user"]["client-certificate-data"]), CERT);
    assert_eq!(data(&config["users"][0]["user"]["client-key-data"]), KEY);
    assert_eq!(
        config["contexts"][0],
        json!({"name": "weft-a", "context": {"cluster": "weft-a", "user": "weft-a"}})
    );
}

#[test]
fn merge_keeps_foreign_entries_and_makes_the_lab_current() {
    let dir = TempDir::new("kc-merge");
    let path = dir.path().join("config");
    std::fs::write(&path, FOREIGN).unwrap();
    let before = read(&path);
    merge(&path, "weft-a", "https://127.0.0.1:6443");
    let after = read(&path);
    assert_eq!(after["current-context"], "weft-a");
    for (list, name) in [("clusters", "prod"), ("users", "prod-admin"), ("contexts", "prod")] {
        assert_eq!(named(&after, list, name), named(&before, list, name), "{list}/{name}");
    }
    for key in ["preferences", "extensions", "apiVersion", "kind"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(
        named(&after, "clusters", "weft-a").unwrap()["cluster"]["server"],
        "https://127.0.0.1:6443"
    );
    assert!(named(&after, "users", "weft-a").is_some());
    assert!(named(&after, "contexts", "weft-a").is_some());
}

#[test]
fn remove_restores_all_but_the_current_context() {
    let dir = TempDir::new("kc-remove");
    let path = dir.path().join("config");
    std::fs::write(&path, FOREIGN).unwrap();
    let mut before = read(&path);
    merge(&path, "weft-a", "https://127.0.0.1:6443");
    remove_from(&path, "weft-a").unwrap();
    // The lab was current: like kind, removal leaves no current context rather than guessing one.
    before["current-context"] = json!("");
    assert_eq!(read(&path), before);
}

#[test]
fn removing_another_lab_keeps_the_current_context() {
    let dir = TempDir::new("kc-remove-other");
    let path = dir.path().join("config");
    merge(&path, "weft-a", "https://127.0.0.1:6443");
    merge(&path, "weft-b", "https://127.0.0.1:6444");
    remove_from(&path, "weft-a").unwrap();
    let config = read(&path);
    assert_eq!(config["current-context"], "weft-b");
    assert!(named(&config, "contexts", "weft-a").is_none());
    assert!(named(&config, "clusters", "weft-b").is_some());
}

#[test]
fn removing_what_is_not_there_touches_nothing() {
    let dir = TempDir::new("kc-noop");
    let path = dir.path().join("config");
    remove_from(&path, "weft-a").unwrap();
    assert!(!path.exists());
    std::fs::write(&path, FOREIGN).unwrap();
    remove_from(&path, "weft-a").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FOREIGN);
}

#[test]
fn merge_creates_a_private_file_and_its_directory() {
    let dir = TempDir::new("kc-create");
    let path = dir.path().join(".kube").join("config");
    merge(&path, "weft-a", "https://127.0.0.1:6443");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(read(&path)["current-context"], "weft-a");
}

#[test]
fn merge_keeps_the_mode_of_an_existing_file_and_writes_through_a_symlink() {
    let dir = TempDir::new("kc-mode");
    let real = dir.path().join("real-config");
    std::fs::write(&real, FOREIGN).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("config");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    merge(&link, "weft-a", "https://127.0.0.1:6443");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(mode(&real), 0o640);
    assert_eq!(read(&real)["current-context"], "weft-a");
}

#[test]
fn merging_again_replaces_the_lab_and_keeps_its_context_namespace() {
    let dir = TempDir::new("kc-remerge");
    let path = dir.path().join("config");
    merge(&path, "weft-a", "https://127.0.0.1:6443");
    let mut config = read(&path);
    config["contexts"][0]["context"]["namespace"] = json!("web");
    config["clusters"][0]["cluster"]["certificate-authority"] = json!("/stale/ca.crt");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    merge(&path, "weft-a", "https://127.0.0.1:7443");
    let config = read(&path);
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(config[list].as_array().unwrap().len(), 1, "{list}");
    }
    assert_eq!(config["clusters"][0]["cluster"]["server"], "https://127.0.0.1:7443");
    assert!(config["clusters"][0]["cluster"].get("certificate-authority").is_none());
    assert_eq!(config["contexts"][0]["context"]["namespace"], "web");
}

#[test]
fn concurrent_merges_all_survive() {
    let dir = TempDir::new("kc-concurrent");
    let path = dir.path().join("config");
    std::fs::write(&path, FOREIGN).unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("weft-{i}")).collect();
    let start = Barrier::new(names.len());
    std::thread::scope(|s| {
        for name in &names {
            let (path, start) = (&path, &start);
            s.spawn(move || {
                start.wait();
                merge(path, name, "https://127.0.0.1:6443");
            });
        }
    });
    let config = read(&path);
    for name in names.iter().map(String::as_str).chain(["prod"]) {
        assert!(named(&config, "contexts", name).is_some(), "lost context {name}");
    }
    assert!(names.iter().any(|n| config["current-context"] == n.as_str()));
}

#[test]
fn a_file_that_is_not_a_kubeconfig_is_refused_and_left_alone() {
    let dir = TempDir::new("kc-invalid");
    let path = dir.path().join("config");
    for text in ["- a\n- b\n", "clusters: 3\n"] {
        std::fs::write(&path, text).unwrap();
        let err = merge_into(&path, "weft-a", "https://127.0.0.1:6443", CA, CERT, KEY).unwrap_err();
        assert!(matches!(err, KubeconfigError::Invalid { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn root_writing_a_users_kubeconfig_leaves_it_theirs() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to write for another user");
        return;
    }
    let dir = TempDir::new("kc-owner");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(&home, Some(nobody), Some(nobody)).unwrap();
    let path = home.join(".kube").join("config");
    merge(&path, "weft-a", "https://127.0.0.1:6443");
    for made in [home.join(".kube"), path.clone()] {
        let meta = std::fs::metadata(&made).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody, nobody), "{}", made.display());
    }
    // A later merge (a lab's restart) keeps the owner too.
    merge(&path, "weft-b", "https://127.0.0.1:6444");
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), nobody);
}
