//! Every exercise under examples/ runs against the real lab and checks its own results (each script exits
//! non-zero when a step does not behave as the notes say).

use std::path::Path;
use std::process::Command;

#[test]
fn every_example_runs() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the examples need root (network namespaces)");
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut dirs: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("run.sh").exists() && p.file_name().is_some_and(|n| n != "cni-demo"))
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "examples found: {dirs:?}");
    for (i, dir) in dirs.iter().enumerate() {
        let out = Command::new("bash")
            .arg(dir.join("run.sh"))
            .env("WEFT", env!("CARGO_BIN_EXE_weft"))
            .env("WEFT_LAB", format!("ex{}-{i}", std::process::id() % 100_000))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
