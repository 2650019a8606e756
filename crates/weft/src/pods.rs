//! `weft exec` and `weft logs`: a pod found through the lab's API; its sandbox entered, its containers' output
//! read from the API (pods/log).

use crate::client::{Api, path, with_query};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::Write;
use weft_lab::sandbox::Sandbox;
use weft_lab::spec::Paths;

#[derive(clap::Args)]
pub struct ExecArgs {
    /// NAME or pod/NAME.
    pod: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Ignored beyond checking it names a container: all containers of a pod share its namespaces.
    #[arg(short, long)]
    container: Option<String>,
    /// Pass stdin to the command (it always is: the command runs here, in the pod's sandbox).
    #[arg(short = 'i', long = "stdin")]
    _stdin: bool,
    /// Stdin is a terminal (the command gets this terminal).
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// NAME or pod/NAME.
    pod: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The container (default: the pod's first).
    #[arg(short, long)]
    container: Option<String>,
    /// Keep printing new output until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<u64>,
    /// Each line prefixed with the time it was written.
    #[arg(long)]
    timestamps: bool,
}

/// The name in `NAME`, `pod/NAME` (`po/`, `pods/`).
fn pod_name(arg: &str) -> Result<&str> {
    match arg.split_once('/') {
        None => Ok(arg),
        Some((word, name)) if weft_model::kind::by_kind("Pod").is_some_and(|r| weft_model::kind::names(r, word)) => {
            Ok(name)
        }
        Some((word, _)) => bail!("weft exec and logs take a pod (NAME or pod/NAME), not a {word}"),
    }
}

fn get_pod(api: &Api, namespace: &str, name: &str) -> Result<Value> {
    let pods = weft_model::kind::by_kind("Pod").context("the Pod resource")?;
    api.get(&path(pods, Some(namespace), Some(name)), "application/json")
}

/// The pod's uid once the runtime has set it up, or why not.
fn running_pod(api: &Api, namespace: &str, name: &str) -> Result<(Value, String)> {
    let pod = get_pod(api, namespace, name)?;
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

/// The command runs here, entering the sandbox of the pod the API names (this host's lab, as root), with the
/// caller's environment and the pods' PATH; `kubectl exec` goes through the API's pods/exec instead.
pub fn exec(paths: &Paths, args: ExecArgs) -> Result<i32> {
    let name = pod_name(&args.pod)?;
    let (pod, _) = running_pod(&Api::connect(paths)?, &args.namespace, name)?;
    let container = check_container(&pod, name, args.container.as_deref())?;
    if args.tty && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let pod: weft_model::k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod).context("the pod as the lab stores it")?;
    let sandbox = Sandbox::of_pod(paths, &pod, Some(&container));
    crate::lab::run_inherit(&sandbox, &args.command)
}

pub fn logs(paths: &Paths, args: LogsArgs) -> Result<()> {
    let api = Api::connect(paths)?;
    let name = pod_name(&args.pod)?;
    let pod = get_pod(&api, &args.namespace, name)?;
    let container = check_container(&pod, name, args.container.as_deref())?;
    let pods = weft_model::kind::by_kind("Pod").context("the Pod resource")?;
    let tail = args.tail.map(|n| n.to_string()).unwrap_or_default();
    let flag = |on: bool| if on { "true" } else { "" };
    let query = [
        ("container", container.as_str()),
        ("follow", flag(args.follow)),
        ("tailLines", tail.as_str()),
        ("timestamps", flag(args.timestamps)),
    ];
    let uri = with_query(
        &format!("{}/log", path(pods, Some(&args.namespace), Some(name))),
        &query,
    );
    let mut out = std::io::stdout().lock();
    api.stream(&uri, "*/*", |line| {
        writeln!(out, "{line}").context("writing the log")?;
        out.flush().context("writing the log")?;
        Ok(true)
    })
}
