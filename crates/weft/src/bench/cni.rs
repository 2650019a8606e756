//! `weft bench cni`: N pods, one after another, through ADD and then DEL, as containerd runs a plugin
//! chain (one exec per plugin, config on stdin, env vars). Everything happens in namespaces the
//! benchmark makes and removes: a node namespace for the plugin and one namespace per pod.

use super::quantile;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Pods per scenario.
    #[arg(long, default_value_t = 250)]
    pods: usize,
    /// Directory holding the plugin binaries, called by type name (bridge, host-local, portmap) the way
    /// runtimes call them; default: a directory of links to the weft-cni next to this binary.
    #[arg(long)]
    cni_bin_dir: Option<PathBuf>,
}

/// Deletes the named namespaces and the scratch directory whatever happens.
struct Scratch {
    names: Vec<String>,
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let batch: String = self.names.iter().map(|n| format!("netns delete {n}\n")).collect();
        let _ = ip_batch(&batch);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip_batch(batch: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .context("running ip")?;
    child.stdin.take().context("ip stdin")?.write_all(batch.as_bytes())?;
    if !child.wait()?.success() {
        bail!("ip -batch failed");
    }
    Ok(())
}

struct Timing {
    add_ms: Vec<f64>,
    del_ms: Vec<f64>,
    peak_rss_kb: i64,
}

pub fn run(args: Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("weft bench cni needs root: it creates network namespaces");
    }
    let tag = format!("wb{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    let node = format!("{tag}-node");
    let pods: Vec<String> = (0..args.pods).map(|i| format!("{tag}-p{i}")).collect();
    let mut scratch = Scratch {
        names: vec![node.clone()],
        dir: dir.clone(),
    };
    scratch.names.extend(pods.iter().cloned());
    let bin_dir = match args.cni_bin_dir {
        Some(d) => d,
        None => link_weft_cni(&dir)?,
    };
    let mut batch = format!("netns add {node}\n");
    for p in &pods {
        batch.push_str(&format!("netns add {p}\n"));
    }
    ip_batch(&batch)?;
    let node_ns = File::open(format!("/run/netns/{node}")).context("opening the node namespace")?;
    Command::new("ip")
        .args(["-n", &node, "link", "set", "lo", "up"])
        .status()?;

    println!(
        "weft bench cni: {} pods, sequential ADD then DEL, plugins from {}",
        args.pods,
        bin_dir.display()
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "scenario", "ADD p50", "ADD p95", "DEL p50", "DEL p95", "ADD 1st", "ADD last", "peak RSS"
    );
    for (name, portmap) in [("(a) bridge+host-local+masq", false), ("(b) (a) + portmap", true)] {
        let t = scenario(&bin_dir, &node_ns, &dir.join(name.replace(' ', "_")), &pods, portmap)?;
        let (mut adds, mut dels) = (t.add_ms.clone(), t.del_ms.clone());
        adds.sort_by(f64::total_cmp);
        dels.sort_by(f64::total_cmp);
        println!(
            "{:<28} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>8}kB",
            name,
            quantile(&adds, 0.5),
            quantile(&adds, 0.95),
            quantile(&dels, 0.5),
            quantile(&dels, 0.95),
            t.add_ms.first().copied().unwrap_or_default(),
            t.add_ms.last().copied().unwrap_or_default(),
            t.peak_rss_kb
        );
    }
    drop(scratch);
    Ok(())
}

/// A directory where bridge, host-local, portmap and loopback are links to weft-cni.
fn link_weft_cni(dir: &std::path::Path) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let weft_cni = me.with_file_name("weft-cni");
    if !weft_cni.is_file() {
        bail!(
            "{} not found: build it (cargo build --release) or pass --cni-bin-dir",
            weft_cni.display()
        );
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for name in ["bridge", "host-local", "portmap", "loopback"] {
        std::os::unix::fs::symlink(&weft_cni, bin.join(name))?;
    }
    Ok(bin)
}

fn scenario(
    bin: &std::path::Path,
    node_ns: &File,
    state: &std::path::Path,
    pods: &[String],
    portmap: bool,
) -> Result<Timing> {
    let bridge = json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0",
        "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true, "stateDir": state.join("weft"),
        "ipam": { "type": "host-local", "subnet": "10.253.0.0/16", "dataDir": state.join("ipam") }
    });
    let mut t = Timing {
        add_ms: Vec::new(),
        del_ms: Vec::new(),
        peak_rss_kb: 0,
    };
    let mut results = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let netns = format!("/run/netns/{pod}");
        let id = format!("bench{i}");
        let start = Instant::now();
        let (result, rss) = exec(bin, "bridge", "ADD", &id, &netns, node_ns, &bridge)?;
        t.peak_rss_kb = t.peak_rss_kb.max(rss);
        let mut prev = result.clone();
        if portmap {
            let pm = portmap_conf(state, &prev, i);
            let (r, rss) = exec(bin, "portmap", "ADD", &id, &netns, node_ns, &pm)?;
            t.peak_rss_kb = t.peak_rss_kb.max(rss);
            prev = r;
        }
        t.add_ms.push(start.elapsed().as_secs_f64() * 1e3);
        results.push(prev);
    }
    for (i, pod) in pods.iter().enumerate() {
        let netns = format!("/run/netns/{pod}");
        let id = format!("bench{i}");
        let start = Instant::now();
        // DEL runs the chain in reverse, each plugin with the cached result.
        if portmap {
            let pm = portmap_conf(state, &results[i], i);
            t.peak_rss_kb = t
                .peak_rss_kb
                .max(exec(bin, "portmap", "DEL", &id, &netns, node_ns, &pm)?.1);
        }
        let mut conf = bridge.clone();
        conf["prevResult"] = results[i].clone();
        t.peak_rss_kb = t
            .peak_rss_kb
            .max(exec(bin, "bridge", "DEL", &id, &netns, node_ns, &conf)?.1);
        t.del_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(t)
}

fn portmap_conf(state: &std::path::Path, prev: &Value, i: usize) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "bench", "type": "portmap", "snat": true, "stateDir": state.join("weft"),
        "runtimeConfig": { "portMappings": [{ "hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp" }] },
        "prevResult": prev
    })
}

/// One plugin exec inside the node namespace; returns its stdout JSON and its peak RSS in kB.
fn exec(
    bin: &std::path::Path,
    plugin: &str,
    command: &str,
    id: &str,
    netns: &str,
    node_ns: &File,
    conf: &Value,
) -> Result<(Value, i64)> {
    let fd = node_ns.as_fd().try_clone_to_owned()?;
    let mut cmd = Command::new(bin.join(plugin));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: setns is async-signal-safe; the child joins the node namespace before exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().with_context(|| format!("running {plugin}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(conf.to_string().as_bytes())?;
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().context("stdout")?, &mut stdout)?;
    let (status, rss) = wait_rusage(child.id() as i32)?;
    let json: Value = if stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&stdout)?
    };
    if status != 0 {
        bail!("{plugin} {command} for {id} failed: {json}");
    }
    Ok((json, rss))
}

/// Reaps the child and returns its exit status and peak RSS (kB).
fn wait_rusage(pid: i32) -> Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((libc::WEXITSTATUS(status), usage.ru_maxrss))
}
