//! `weft bench agent-memory`: what the node agent holds at N Services × E endpoints. The lab's API server with its
//! store runs in this process (no root); a child process follows it as the agent does (`KubeSource` with the
//! agent's kinds and its projection of them, then the service proxy's and NetworkPolicy's plans for one node, and
//! what the proxy's applier holds and writes: the ruleset last applied and each transaction's text, a large
//! change in parts as the agent applies it, without the kernel) and reports its peak RSS after the first list,
//! after the first plans, and again after every EndpointSlice changed in one commit (more changes than the lab
//! API's change log keeps: the watch expires and the watcher relists, the case where a client could hold the
//! cluster twice).

use super::api::object;
use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use weft_kube::{ClientOptions, KubeSource};
use weft_lab::supervisor::Shared;
use weft_model::{Key, Source};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Endpoints per Service (one EndpointSlice each).
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// Internal: be the agent, following the API this kubeconfig leads to.
    #[arg(long, hide = true)]
    follow: Option<PathBuf>,
}

const NODE: &str = "node-1";
/// Created last, after every slice changed.
const MARKER: &str = "bench-done";

pub fn run(args: Args) -> Result<()> {
    if let Some(kubeconfig) = &args.follow {
        return follow(kubeconfig);
    }
    super::api::in_process("bench-agent", |dir, shared| bench(dir, shared, &args))
}

fn bench(dir: &std::path::Path, shared: Arc<Shared>, args: &Args) -> Result<()> {
    shared.write(|store| -> Result<()> {
        store.create(object(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
        )?)?;
        store.create(object(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
            "spec": {"podCIDR": "10.244.0.0/16"},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.11"}]}}),
        )?)?;
        for i in 0..args.services {
            store.create(object(service(i))?)?;
            store.create(object(slice(i, args.endpoints, true))?)?;
        }
        Ok(())
    })?;
    let kubeconfig = super::api::serve(dir, &shared)?;
    println!(
        "{} Services × {} endpoints (one EndpointSlice each) in the API; the agent's kinds followed by a child process",
        args.services, args.endpoints
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args(["bench", "agent-memory", "--follow"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the follower")?;
    let lines = std::io::BufReader::new(child.stdout.take().context("the follower's output")?).lines();
    for line in lines {
        let line = line?;
        println!("{line}");
        if line.starts_with("listed") {
            // Every slice changes (its first endpoint turns not ready) in one commit, then the marker.
            shared.write(|store| -> Result<()> {
                for i in 0..args.services {
                    store.replace(object(slice(i, args.endpoints, false))?);
                }
                Ok(())
            })?;
            shared.write(|store| {
                store
                    .create(object(service_named(MARKER, 0))?)
                    .map_err(|e| anyhow!("{e}"))
            })?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(anyhow!("the follower failed: {status}"));
    }
    println!("target: agent memory at 10,000 Services × 5 endpoints <= 100 MB");
    Ok(())
}

/// The agent's side: the source and the plans, and the peak RSS after each step.
fn follow(kubeconfig: &std::path::Path) -> Result<()> {
    let options = ClientOptions {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..ClientOptions::default()
    };
    let started = Instant::now();
    let keep = weft_agent::projection::keep;
    let mut source = KubeSource::start_with(&options, weft_agent::node::KINDS, &[], keep)?;
    let first = source.next(0)?;
    // The objects alone, before any plan.
    let listed = super::peak_rss_mb();
    let mut planner = weft_proxy::Planner::default();
    let ctx = weft_proxy::Context {
        node: NODE.into(),
        cluster_cidr: "10.244.0.0/16".parse()?,
    };
    // As the applier: the whole table first, then the ruleset applied kept to diff the next one against.
    let mut applied = planner.plan(&first, &ctx);
    let counts = applied.counts();
    // Streamed into nft by the agent, into nothing here.
    let mut written = applied.write_full(&mut std::io::sink())?;
    let policy = weft_policy::plan::plan(&weft_policy::Cluster::index(&first), NODE);
    let planned = super::peak_rss_mb();
    // From here on the peak of what follows alone (the first plan's full table text is gone by then); before the
    // line that starts the changes.
    let since = reset_peak_rss().is_ok();
    println!(
        "listed {} objects (peak RSS {listed:.1} MB) and planned ({} chains, {} rules, {} map elements; {} policy chains) in {:.1} s: peak RSS {planned:.1} MB",
        first.len(),
        counts.0,
        counts.1,
        counts.2,
        policy.chains.len(),
        started.elapsed().as_secs_f64(),
    );
    let marker = Key::new("Service", Some("default"), MARKER);
    let started = Instant::now();
    // From here on only what the agent holds: the latest snapshot and the planner (which keeps what it diffs
    // against).
    let mut snap = first;
    let mut errors = Vec::new();
    // Every change is in once the marker is and every slice has changed: the marker comes through the Services'
    // watch, which may be done before the slices' relist is.
    let changed = |snap: &weft_model::Snapshot| {
        let mut slices = snap
            .of_kind("EndpointSlice")
            .filter_map(weft_model::Object::endpoint_slice);
        slices.all(|s| s.endpoints.first().is_some_and(|e| !e.is_ready()))
    };
    while snap.get(&marker).is_none() || !changed(&snap) {
        match source.next(snap.revision) {
            Ok(next) => snap = next,
            // As the agent does: the watcher retries (a burst larger than the API's change log expires the watch:
            // `410 Gone`, and the watcher relists).
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        }
        // As the agent's sync: a large change planned and applied in parts.
        let applied_part = |desired: weft_proxy::Ruleset| -> Result<(), std::convert::Infallible> {
            written += weft_proxy::ruleset::script(&applied.changes(&desired)).len();
            applied = desired;
            Ok(())
        };
        let Ok(()) = planner.plan_in_parts(&snap, &ctx, weft_proxy::SERVICES_PER_PART, applied_part);
    }
    let relist = super::peak_rss_mb();
    println!(
        "every EndpointSlice changed, applied and planned in {:.1} s ({}; {:.1} MB of nft text in all): peak RSS {}, the process's {:.1} MB",
        started.elapsed().as_secs_f64(),
        if errors.iter().any(|e| e.contains("Expired")) {
            "the watch expired and was relisted"
        } else {
            "watch events"
        },
        written as f64 / 1e6,
        match since {
            true => format!("since the first plan {relist:.1} MB"),
            false => "since the first plan not known (/proc/self/clear_refs)".to_string(),
        },
        relist.max(planned)
    );
    Ok(())
}

/// Makes this process's peak RSS (VmHWM) its current RSS, so the next reading is the peak of what follows.
fn reset_peak_rss() -> std::io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

fn service(i: usize) -> Value {
    service_named(&format!("svc-{i}"), i + 1)
}

fn service_named(name: &str, i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
}

fn slice(i: usize, endpoints: usize, first_ready: bool) -> Value {
    let endpoints: Vec<Value> = (0..endpoints)
        .map(|e| {
            let n = i * endpoints + e;
            json!({"addresses": [format!("10.244.{}.{}", n / 250 % 256, n % 250 + 2)],
                "conditions": {"ready": e > 0 || first_ready}, "nodeName": NODE})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": format!("svc-{i}-abcde"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
}
