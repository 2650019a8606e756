//! Every exercise under examples/ runs against the real lab and checks its own results (each script exits
//! non-zero when a step does not behave as the notes say). One test per exercise, so they run side by side,
//! each in a lab of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use weft_testkit::root;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs `examples/NAME/run.sh` in a lab named for this process and the exercise.
fn run(name: &str) {
    let number = name.split('-').next().unwrap_or(name);
    run_script(name, "run.sh", number);
}

/// Runs `examples/NAME/SCRIPT` in a lab named for this process and `lab`.
fn run_script(name: &str, script: &str, lab: &str) {
    if !root() {
        return;
    }
    let out = Command::new("bash")
        .arg(examples().join(name).join(script))
        .env("WEFT", env!("CARGO_BIN_EXE_weft"))
        .env("WEFT_LAB", format!("ex{}-{lab}", std::process::id() % 100_000))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

macro_rules! exercises {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run($dir);
            }
        )*

        /// The exercises this file runs.
        const LISTED: &[&str] = &[$($dir),*];
    };
}

exercises! {
    namespaces_and_veth => "01-namespaces-veth",
    bridge => "02-bridge",
    routes_and_nat => "03-routes-nat",
    cni => "04-cni",
    cross_node => "05-cross-node",
    services => "06-services",
    dns => "07-dns",
    network_policy => "08-network-policy",
    ingress => "09-ingress",
    certificates => "10-certificates",
    gateway_api => "11-gateway-api",
    observe => "12-observe",
}

/// 12-observe's IP pool part (a script of its own beside the exercise's run.sh).
#[test]
fn observe_ip_pools() {
    run_script("12-observe", "ippool.sh", "12p");
}

#[test]
fn every_exercise_is_listed() {
    // cni-demo runs the release build of weft-cni by hand (the suite builds debug); 04-cni is its exercise.
    let mut found: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("run.sh").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "cni-demo")
        .collect();
    found.sort();
    assert_eq!(found, LISTED, "every examples/*/run.sh has a test here");
}
