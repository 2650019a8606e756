//! `weft exec` and `weft logs`: into a pod's sandbox, and its containers' output.

use crate::objects::get_one;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use weft_lab::sandbox::Sandbox;
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct ExecArgs {
    pod: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Ignored beyond checking it names a container: all containers of a pod share its namespaces.
    #[arg(short, long)]
    container: Option<String>,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    pod: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The container (default: the pod's first).
    #[arg(short, long)]
    container: Option<String>,
}

/// The pod's uid once the runtime has set it up, or why not.
fn running_pod(paths: &Paths, namespace: &str, name: &str) -> Result<(Value, String)> {
    let pod = get_one(paths, "Pod", namespace, name)?;
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if pod.pointer("/status/podIP").is_none() {
        bail!("pod {name} is not running yet (see `weft get pod {name}`)");
    }
    Ok((pod, uid))
}

fn containers(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn check_container(pod: &Value, name: &str, container: Option<&str>) -> Result<String> {
    let all = containers(pod);
    match container {
        Some(c) if all.iter().any(|x| x == c) => Ok(c.to_string()),
        Some(c) => bail!(
            "container {c} is not valid for pod {name} (its containers: {})",
            all.join(", ")
        ),
        None => all.into_iter().next().context("the pod has no containers"),
    }
}

pub fn exec(paths: &Paths, args: ExecArgs) -> Result<i32> {
    let (pod, _) = running_pod(paths, &args.namespace, &args.pod)?;
    check_container(&pod, &args.pod, args.container.as_deref())?;
    let pod: weft_model::k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod).context("the pod as the lab stores it")?;
    let sandbox = Sandbox::of_pod(paths, &pod);
    crate::lab::run_inherit(sandbox.command(&args.command)?, &args.command)
}

pub fn logs(paths: &Paths, args: LogsArgs) -> Result<()> {
    let pod = get_one(paths, "Pod", &args.namespace, &args.pod)?;
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    let container = check_container(&pod, &args.pod, args.container.as_deref())?;
    let file = paths.pod_dir(uid).join(format!("{container}.log"));
    match std::fs::read(&file) {
        Ok(bytes) => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes).context("writing the log")?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}
