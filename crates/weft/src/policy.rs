//! `weft policy check`: the usual NetworkPolicy traps, found in manifests before they are applied.

use anyhow::Result;
use weft_lab::spec::Paths;
use weft_policy::Cluster;

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// Warn about the usual NetworkPolicy traps in manifests before applying them.
    Check {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

/// `weft policy check`: prints one warning per trap; selectors are checked against the lab's pods when it runs.
pub fn run(paths: &Paths, cmd: PolicyCmd) -> Result<i32> {
    let PolicyCmd::Check { files, namespace } = cmd;
    let snap = crate::objects::snapshot(paths).ok();
    let cluster = snap.as_ref().map(Cluster::index);
    let mut warnings = 0;
    let mut policies = 0;
    for value in crate::objects::read_manifests(&files)? {
        let mut object = weft_model::manifest::from_value(value).map_err(anyhow::Error::msg)?;
        object.default_namespace(&namespace);
        let weft_model::Object::NetworkPolicy(p) = object else {
            continue;
        };
        policies += 1;
        for w in weft_policy::check::check(&p, cluster.as_ref()) {
            println!("warning: {w}");
            warnings += 1;
        }
    }
    if cluster.is_none() {
        eprintln!("(no running lab: selectors were not checked against pods)");
    }
    println!("{policies} policies checked, {warnings} warnings");
    Ok(0)
}
